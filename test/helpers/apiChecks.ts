import { joinPath, parsePath, rootPath } from '../../src/content/paths.js';
import { parseQuery } from '../../src/content/query.js';
import { errorCatalogue, type ErrorCode } from '../../src/errors/catalogue.js';
import type { ConclaveNode } from '../../src/node/conclaveNode.js';
import type { ResponseLike } from './rawHttp.js';

/** Checks of the API's uniform contract, shared by example and property tests. Each returns a problem or undefined. */

export function clip(text: string, max = 300): string {
  return text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text;
}

function headerText(res: ResponseLike, name: string): string | undefined {
  const value = res.headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** Every answer carries X-Conclave-Index: a non-negative integer. */
export function indexHeaderProblem(res: ResponseLike): string | undefined {
  const text = headerText(res, 'x-conclave-index');
  if (text === undefined) return 'the response has no X-Conclave-Index header';
  if (!/^(0|[1-9][0-9]*)$/.test(text) || !Number.isSafeInteger(Number(text))) {
    return `X-Conclave-Index is ${JSON.stringify(text)}, not a non-negative integer`;
  }
  return undefined;
}

/**
 * A 4xx/5xx body is {"error": {"code", "message", ...}} with a catalogue code whose status is the HTTP status and
 * a non-empty message. Returns the code when the body is right.
 */
export function errorBodyProblem(res: ResponseLike): { code?: ErrorCode; problem?: string } {
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    return { problem: `the error body is not JSON: ${JSON.stringify(clip(res.body))}` };
  }
  const error = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>)['error'] : undefined;
  if (typeof error !== 'object' || error === null || Array.isArray(error)) {
    return { problem: `the error body has no "error" object: ${clip(res.body)}` };
  }
  const { code, message } = error as Record<string, unknown>;
  if (typeof code !== 'string' || !Object.hasOwn(errorCatalogue, code)) {
    return { problem: `error.code ${JSON.stringify(code)} is not in the catalogue: ${clip(res.body)}` };
  }
  const expected = errorCatalogue[code as ErrorCode].status;
  if (expected !== res.statusCode) {
    return { problem: `error.code ${code} has status ${expected} in the catalogue, but the response is ${res.statusCode}` };
  }
  if (typeof message !== 'string' || message.trim().length === 0) {
    return { problem: `error.message is ${JSON.stringify(message)}, not a non-empty string` };
  }
  return { code: code as ErrorCode };
}

/**
 * The stored tree is consistent: one root, every other node's parent exists and its path is the parent's path
 * joined with its name, and every stored path is one the API accepts (so every node stays addressable).
 */
export function treeProblems(node: ConclaveNode): string[] {
  const spec = parseQuery({ limit: '10000' }, { pageSizeDefault: 10_000, pageSizeMax: 10_000 });
  const all = node.repository.content.query(spec).items;
  const byId = new Map(all.map((n) => [n.id, n]));
  const problems: string[] = [];
  for (const n of all) {
    if (n.path === rootPath) {
      if (n.parentId !== null) problems.push(`the root has a parent ${n.parentId}`);
      continue;
    }
    const parent = n.parentId === null ? undefined : byId.get(n.parentId);
    if (parent === undefined) {
      problems.push(`${clip(n.path, 120)} (id ${n.id}) has no parent node`);
      continue;
    }
    const expected = joinPath(parent.path, n.name);
    if (n.path !== expected) {
      problems.push(`node ${n.id} is stored at ${JSON.stringify(clip(n.path, 120))} but its parent and name make ${JSON.stringify(clip(expected, 120))}`);
    }
    try {
      parsePath(n.path);
    } catch (err) {
      problems.push(`node ${n.id} is stored at a path the API refuses: ${(err as Error).message.slice(0, 200)}`);
    }
  }
  if (all.filter((n) => n.path === rootPath).length !== 1) problems.push('there is not exactly one root');
  return problems;
}
