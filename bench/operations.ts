import { Pool, type Dispatcher } from 'undici';

import type { Operation } from './load.js';

/** The requests the bench sends: 1 KB documents written at fresh paths and read back, with the admin's Basic credentials. */

export const adminPassword = 'bench-admin-password';
export const authorization = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;
/** Length of the string property, so a document's properties serialize to about 1 KB. */
export const documentTextChars = 1000;

export type ReadConsistency = 'stale' | 'sequential' | 'linearizable';

/**
 * Paths under one parent, numbered by one counter, so every writer of a run writes a path nobody wrote before — or,
 * with `documents`, cycling over that many paths, so that once each exists every write replaces a document (a new
 * version of it).
 */
export class DocumentPaths {
  private next = 0;
  /** Paths whose PUT was acknowledged (2xx): what the readers may ask for. */
  readonly written: string[] = [];

  constructor(
    readonly parentPath: string,
    private readonly documents?: number,
  ) {}

  fresh(): { path: string; sequence: number } {
    const sequence = this.next++;
    const number = this.documents === undefined ? sequence : sequence % this.documents;
    return { path: `${this.parentPath}/d${String(number).padStart(9, '0')}`, sequence };
  }
}

/** The JSON body of the document with this sequence number: about 1 KB of properties. */
export function documentBody(sequence: number, text = documentText(documentTextChars)): string {
  return JSON.stringify({ properties: { title: `Document ${sequence}`, text } });
}

/**
 * Creates documents at fresh paths; records each path that was stored so reads can find it, and tells
 * `acknowledged` of each as its answer is read (the feed part times events from there).
 */
export function writer(paths: DocumentPaths, acknowledged?: (path: string) => void): Operation {
  const text = documentText(documentTextChars);
  return async (pool) => {
    const { path, sequence } = paths.fresh();
    const response = await pool.request({
      path: `/api/v1/content${path}`,
      method: 'PUT',
      headers: { authorization, 'content-type': 'application/json' },
      body: documentBody(sequence, text),
    });
    if (!is2xx(response.statusCode)) throw await failureOf(response);
    await response.body.dump();
    paths.written.push(path);
    acknowledged?.(path);
    return response.statusCode;
  };
}

/**
 * Reads a random document among those written, receiving the whole body as a real client would. It uses undici's
 * dispatcher interface (the one its request() is built on) and keeps the body's chunks as they come, without the
 * stream and the promise request() wraps around each response: the client shares the machine's cores with the
 * servers, and that wrapping cost it about a third of its CPU per read.
 */
export function reader(paths: DocumentPaths, consistency?: ReadConsistency): Operation {
  const written = paths.written;
  if (written.length === 0) throw new Error('no document was written, so there is nothing to read');
  const query = consistency === undefined ? '' : `?consistency=${consistency}`;
  const headers = ['authorization', authorization];
  return (pool) =>
    new Promise<number>((resolve, reject) => {
      const path = written[Math.floor(Math.random() * written.length)]!;
      let status = 0;
      const chunks: Buffer[] = [];
      pool.dispatch(
        { path: `/api/v1/content${path}${query}`, method: 'GET', headers },
        {
          onConnect: () => undefined,
          onError: reject,
          onHeaders: (statusCode) => {
            status = statusCode;
            return true;
          },
          onData: (chunk) => {
            chunks.push(chunk);
            return true;
          },
          onComplete: () => {
            const body = Buffer.concat(chunks);
            if (is2xx(status)) resolve(status);
            else reject(new Error(`HTTP ${status}${errorCodeOf(body.toString())}`));
          },
        },
      );
    });
}

const is2xx = (status: number): boolean => status >= 200 && status <= 299;

/** An error naming the status and the error code of a refusal (the body is read, so the connection is reused). */
async function failureOf(response: Dispatcher.ResponseData): Promise<Error> {
  const text = await response.body.text().catch(() => '');
  return new Error(`HTTP ${response.statusCode}${errorCodeOf(text)}`);
}

/** " CODE" for a body in the catalogue's format, "" otherwise (the status says enough). */
function errorCodeOf(text: string): string {
  try {
    const { code = '', message = '' } = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error ?? {};
    // The message too, cut short: which of a code's causes it was is what a failed run needs to say.
    return code === '' ? '' : ` ${code}${message === '' ? '' : ` (${message.length > 160 ? `${message.slice(0, 160)}…` : message})`}`;
  } catch {
    return '';
  }
}

/** Varied printable text, so nothing downstream gets an unrealistically uniform value. */
export function documentText(chars: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ';
  let text = '';
  for (let i = 0; i < chars; i++) text += alphabet[(i * 7 + (i >> 3)) % alphabet.length];
  return text;
}

/** One request outside any measurement; throws unless it answers `expected`. Returns the body's text. */
export async function requestOnce(
  origin: string,
  method: 'GET' | 'PUT',
  path: string,
  expected: readonly number[],
  options: { body?: string | Buffer; contentType?: string } = {},
): Promise<string> {
  const pool = new Pool(origin, { connections: 1 });
  try {
    const response = await pool.request({
      path,
      method,
      headers: { authorization, ...(options.contentType !== undefined ? { 'content-type': options.contentType } : {}) },
      body: options.body ?? null,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    const text = await response.body.text();
    if (!expected.includes(response.statusCode)) throw new Error(`${method} ${path} on ${origin} answered ${response.statusCode}: ${text}`);
    return text;
  } finally {
    await pool.close();
  }
}

/** A JSON request as an administrator (or `auth`), answered with its status and JSON body (an empty object if none). */
export async function callJson(
  url: string,
  method: string,
  body?: unknown,
  options: { auth?: string; timeoutMs?: number } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method,
    headers: { authorization: options.auth ?? authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 120_000),
  });
  return { status: res.status, json: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}
