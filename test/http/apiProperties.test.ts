/**
 * Property-based test of the HTTP API's uniform contract. Each run opens a fresh node (a copy of a prepared data
 * directory holding the admin and a "reader" user) and throws a random sequence of requests at it, so state builds
 * up within a run: later requests aim at paths, etags, ids and cursors that earlier responses revealed.
 *
 * For every request:
 *   (a) the server never answers 5xx;
 *   (b) every 4xx body is {"error": {"code", "message"}} with a catalogue code whose status is the HTTP status and a
 *       non-empty message;
 *   (c) a 4xx leaves the stored state (ContentTables.digest(): all nodes and users) exactly as it was;
 *   (d) every response carries X-Conclave-Index, a non-negative integer;
 * and, because they are what a refusal or a read must never break either:
 *   (e) GET and HEAD never change the stored state;
 *   (f) after a change the stored tree is consistent: every node's path is its parent's path plus its name, and
 *       every stored path is one the API accepts;
 *   (g) authentication and roles: without credentials a protected route answers 401 AUTH_REQUIRED, with wrong ones
 *       401 AUTH_INVALID, and a user without the route's permission (the "reader" user on any write) 403 FORBIDDEN;
 *       a known user with valid credentials is never answered 401.
 *
 * Replaying: a failure prints fast-check's seed, and a "Replay:" line with CONCLAVE_TEST_SEED, CONCLAVE_TEST_PATH and
 * CONCLAVE_TEST_REPLAY_PATH; set those to rerun straight into the shrunk counterexample (the seed alone reruns the
 * whole search). CONCLAVE_TEST_RUNS overrides the number of runs (e.g. for a longer soak). Node ids are random
 * UUIDs, so orderings that tie on everything but the id can differ between a run and its replay; everything else the
 * requests depend on is drawn from the seed.
 *
 * Paths with "." or ".." segments go over a real socket (app.inject would resolve them away); all else uses inject.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync } from 'node:fs';
import { after, afterEach, before, beforeEach, describe, it, type TestContext } from 'node:test';

import fc from 'fast-check';

import { can, type Permission } from '../../src/auth/authenticator.js';
import { applyMergePatch } from '../../src/content/mergePatch.js';
import type { JsonValue, Role } from '../../src/content/model.js';
import { errorCatalogue } from '../../src/errors/catalogue.js';
import { errorBodyProblem, clip, indexHeaderProblem, treeProblems } from '../helpers/apiChecks.js';
import { adminPassword, json, openTestNode, type TestNode } from '../helpers/app.js';
import { rawRequest, type ResponseLike } from '../helpers/rawHttp.js';
import { depthOf, jsonDocument, refusalsOf } from '../helpers/jsonDocuments.js';
import { tempDir } from '../helpers/tmp.js';
import { propertyParameters } from '../sim/testSeed.js';

// The model expects 401 for every wrong password; the throttle that refuses repeated ones with 429 has its own
// tests (test/http/credentials.test.ts, test/unit/loginThrottle.test.ts).
const settings = { 'http.bodyBytesMax': 4096, 'content.binaryBytesMax': 2048, 'auth.loginFailuresFree': 1000 };
const readerPassword = 'reader-password';
const passwords = [adminPassword, readerPassword, 'password-one', 'password-two'] as const;

function basic(name: string, password: string): string {
  return `Basic ${Buffer.from(`${name}:${password}`).toString('base64')}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The prepared repository: bootstrapped, with the reader user and bearer tokens for admin and reader. Each run
// copies it, so no run pays for bootstrap or password hashing unless its requests ask for that.
// ---------------------------------------------------------------------------------------------------------------

interface Template {
  readonly dir: string;
  readonly cleanup: () => void;
  readonly tokens: Record<'admin' | 'reader', string>;
  /** The nodes the template holds besides the root, so that hits on existing nodes are common from the start. */
  readonly nodes: ReadonlyArray<{ path: string; id: string; etag: string }>;
}

const templateNodes: ReadonlyArray<[string, Record<string, unknown>]> = [
  ['/a', { title: 'Hello', n: 1 }],
  ['/a/b', { n: 2, tags: ['x'] }],
  ['/a/c', { n: -1, a: { b: 1 } }],
  ['/b', { title: 'x' }],
];

async function prepareTemplate(): Promise<Template> {
  const tmp = tempDir('conclave-props-template-');
  const t = await openTestNode(settings, tmp.dir);
  try {
    const created = await t.request({ method: 'PUT', url: '/api/v1/users/reader', ...json({ password: readerPassword, roles: ['reader'] }) });
    assert.equal(created.statusCode, 201, created.body);
    const nodes: Array<{ path: string; id: string; etag: string }> = [];
    for (const [path, properties] of templateNodes) {
      const res = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties }) });
      assert.equal(res.statusCode, 201, res.body);
      const node = JSON.parse(res.body) as { id: string; etag: string };
      nodes.push({ path, id: node.id, etag: node.etag });
    }
    const tokens = { admin: '', reader: '' };
    for (const [name, password] of [['admin', adminPassword], ['reader', readerPassword]] as const) {
      const login = await t.request({ method: 'POST', url: '/api/v1/auth/login', auth: null, ...json({ username: name, password }) });
      assert.equal(login.statusCode, 200, login.body);
      tokens[name] = (JSON.parse(login.body) as { token: string }).token;
    }
    return { dir: tmp.dir, cleanup: tmp.cleanup, tokens, nodes };
  } finally {
    await t.close();
  }
}

async function openFromTemplate(template: Template): Promise<{ t: TestNode; cleanup: () => void }> {
  const tmp = tempDir('conclave-props-run-');
  cpSync(template.dir, tmp.dir, { recursive: true });
  const t = await openTestNode(settings, tmp.dir);
  return { t, cleanup: tmp.cleanup };
}

// ---------------------------------------------------------------------------------------------------------------
// Request descriptions: plain data drawn by fast-check. References to earlier results ("the i-th known path") are
// resolved when the request is sent, against what the run has seen so far.
// ---------------------------------------------------------------------------------------------------------------

type UserName = 'admin' | 'reader' | 'alice';
type AuthChoice =
  | { a: 'user'; name: UserName; basic: boolean }
  | { a: 'none' }
  | { a: 'emptyHeader' }
  | { a: 'wrongPassword' }
  | { a: 'unknownUser' }
  | { a: 'badScheme'; i: number }
  | { a: 'garbageToken'; i: number };

type PathSpec =
  | { k: 'segs'; segs: string[] }
  | { k: 'known'; i: number }
  | { k: 'knownChild'; i: number; name: string }
  | { k: 'root' }
  | { k: 'deep'; depth: number }
  | { k: 'long' };

type UrlStyle = { s: 'std' } | { s: 'all' } | { s: 'minimal' } | { s: 'slash2f' } | { s: 'corrupt'; bad: string; at: number };

type CursorMut =
  | { m: 'none' }
  | { m: 'truncate' }
  | { m: 'append'; s: string }
  | { m: 'value'; v: null | string | number }
  | { m: 'id'; id: string }
  | { m: 'fingerprint' }
  | { m: 'arity' };

type QVal = { v: 'lit'; s: string } | { v: 'path'; p: PathSpec } | { v: 'cursor'; i: number; mut: CursorMut } | { v: 'raw'; s: string };

type BodyMode =
  | { m: 'json'; ct: string }
  | { m: 'none' }
  | { m: 'empty'; ct: string }
  | { m: 'text'; text: string; ct: string | null }
  | { m: 'oversized'; ct: string }
  | { m: 'array' }
  | { m: 'wrongType'; ct: string };

type TagSpec =
  | { t: 'star' }
  | { t: 'known'; i: number; weak: boolean }
  | { t: 'current'; weak: boolean }
  | { t: 'list'; i: number }
  | { t: 'literal'; text: string };

interface Pre {
  readonly ifMatch: TagSpec | null;
  readonly ifNoneMatch: TagSpec | null;
}

type PathValue = { pv: 'path'; p: PathSpec } | { pv: 'literal'; value: unknown } | { pv: 'fromChild'; name: string } | { pv: 'sibling'; name: string };

/** One operation of a POST /api/v1/batch: well-formed ones aimed at known nodes mostly, and some junk. */
type BatchItem =
  | { b: 'put'; path: PathValue; properties: unknown; createOnly: boolean }
  | { b: 'patch'; path: PathValue; patch: unknown; tag: TagSpec | null }
  | { b: 'delete'; path: PathValue; recursive: unknown }
  | { b: 'move'; from: PathValue; to: PathValue }
  | { b: 'junk'; value: unknown };

type Op =
  | {
      k: 'content';
      method: 'GET' | 'HEAD' | 'PUT' | 'PATCH' | 'DELETE' | 'POST';
      path: PathSpec;
      rootSlash: boolean;
      style: UrlStyle;
      query: Array<[string, QVal]>;
      put: Record<string, unknown>;
      patch: unknown;
      body: BodyMode;
      pre: Pre;
    }
  | { k: 'move'; from: PathValue; to: PathValue | null; before: unknown; extra: boolean; body: BodyMode; pre: Pre }
  | { k: 'reorder'; path: PathValue; order: { o: 'children'; keys: number[]; mut: string } | { o: 'literal'; value: unknown }; body: BodyMode; pre: Pre }
  | { k: 'batch'; items: BatchItem[]; body: BodyMode }
  | { k: 'restore'; path: PathValue; version: unknown; id: 'none' | 'known' | 'junk'; idKnown: number; to: PathValue | null; extra: boolean; body: BodyMode; pre: Pre }
  | { k: 'schema'; method: 'PUT' | 'DELETE' | 'GET' | 'POLICY'; type: string; definition: unknown; required: unknown; body: BodyMode }
  | { k: 'query'; params: Array<[string, QVal]> }
  | { k: 'nextPage'; i: number; mut: CursorMut }
  | { k: 'nodeById'; id: { known: number } | { literal: string } }
  | { k: 'search'; q: string; extra: Array<[string, string]> }
  | { k: 'access'; method: 'GET' | 'PUT'; path: PathSpec; style: UrlStyle; entries: unknown; body: BodyMode }
  | { k: 'searchPolicy'; value: unknown; body: BodyMode }
  | {
      k: 'binary';
      method: 'PUT' | 'GET' | 'HEAD' | 'DELETE';
      path: PathSpec;
      style: UrlStyle;
      property: string | null;
      extraQuery: boolean;
      size: number;
      seed: number;
      sha: string;
      contentType: string | null;
      range: string | null;
      pre: Pre;
    }
  | { k: 'user'; method: 'GET' | 'LIST' | 'PUT' | 'DELETE'; name: string; body: Record<string, unknown>; mode: BodyMode; createOnly: boolean }
  | { k: 'login'; body: Record<string, unknown>; mode: BodyMode }
  | { k: 'misc'; method: string; url: string };

interface Req {
  readonly auth: AuthChoice;
  readonly op: Op;
}

// ---- arbitraries ----

const plainName = fc.constantFrom('a', 'b', 'c');
const oddName = fc.constantFrom(
  '..', '.', '', '\u0001', 'x\u007fy', '\t', 'n'.repeat(300), 'x'.repeat(255), 'ü'.repeat(128), 'é', 'ж', '😀', 'a b', '%', '%2F',
  'a?b#c', '~x', 'B', '\\', '\ud800', ':@', 'a.b', '...', ' ', 'null',
);
const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 24, arbitrary: plainName },
  { weight: 3, arbitrary: oddName },
  { weight: 1, arbitrary: fc.string({ maxLength: 4 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 3, unit: 'grapheme' }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 3, unit: 'binary' }) },
);

const known = fc.nat({ max: 1000 });
/** Names for a new child of a known node: a wider alphabet, so that creating succeeds often. */
const childName = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g') },
  { weight: 1, arbitrary: fc.constantFrom('é', 'ж', '😀', '𝄞x') },
  { weight: 2, arbitrary: nameArb },
);
const pathSpecArb: fc.Arbitrary<PathSpec> = fc.oneof(
  { weight: 10, arbitrary: fc.array(nameArb, { minLength: 1, maxLength: 3 }).map((segs): PathSpec => ({ k: 'segs', segs })) },
  { weight: 8, arbitrary: known.map((i): PathSpec => ({ k: 'known', i })) },
  { weight: 6, arbitrary: fc.tuple(known, childName).map(([i, name]): PathSpec => ({ k: 'knownChild', i, name })) },
  { weight: 1, arbitrary: fc.constant<PathSpec>({ k: 'root' }) },
  { weight: 1, arbitrary: fc.integer({ min: 60, max: 72 }).map((depth): PathSpec => ({ k: 'deep', depth })) },
  { weight: 1, arbitrary: fc.constant<PathSpec>({ k: 'long' }) },
);

const urlStyleArb: fc.Arbitrary<UrlStyle> = fc.oneof(
  { weight: 20, arbitrary: fc.constant<UrlStyle>({ s: 'std' }) },
  { weight: 2, arbitrary: fc.constant<UrlStyle>({ s: 'all' }) },
  { weight: 2, arbitrary: fc.constant<UrlStyle>({ s: 'minimal' }) },
  { weight: 1, arbitrary: fc.constant<UrlStyle>({ s: 'slash2f' }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('%zz', '%', '%C3', '%ED%A0%80', '%E0%A4%A', '%c3%28', '%FF'), fc.nat({ max: 10 }))
      .map(([bad, at]): UrlStyle => ({ s: 'corrupt', bad, at })),
  },
);

const cursorMutArb: fc.Arbitrary<CursorMut> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<CursorMut>({ m: 'none' }) },
  { weight: 1, arbitrary: fc.constant<CursorMut>({ m: 'truncate' }) },
  { weight: 1, arbitrary: fc.constantFrom('x', '=', '!', '%00', '..').map((s): CursorMut => ({ m: 'append', s })) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom<null | string | number>(null, 'abc', '', -1, 0.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 'x'.repeat(500), '/', '\u0000')
      .map((v): CursorMut => ({ m: 'value', v })),
  },
  { weight: 1, arbitrary: fc.constantFrom('', 'zzz', '\u0000', '00000000-0000-0000-0000-000000000000').map((id): CursorMut => ({ m: 'id', id })) },
  { weight: 1, arbitrary: fc.constant<CursorMut>({ m: 'fingerprint' }) },
  { weight: 1, arbitrary: fc.constant<CursorMut>({ m: 'arity' }) },
);

const tagArb: fc.Arbitrary<TagSpec> = fc.oneof(
  { weight: 4, arbitrary: known.map((i): TagSpec => ({ t: 'known', i, weak: false })) },
  { weight: 1, arbitrary: known.map((i): TagSpec => ({ t: 'known', i, weak: true })) },
  { weight: 4, arbitrary: fc.constant<TagSpec>({ t: 'current', weak: false }) },
  { weight: 1, arbitrary: fc.constant<TagSpec>({ t: 'current', weak: true }) },
  { weight: 2, arbitrary: fc.constant<TagSpec>({ t: 'star' }) },
  { weight: 1, arbitrary: known.map((i): TagSpec => ({ t: 'list', i })) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom('"nope"', 'garbage', '', ' ', 'W/"x"', '"a", "b"', '"a" "b"', ',', '"', '*, "x"', 'W/', `"${'x'.repeat(300)}"`, '"a",', ', "a"', 'W/"a", "b"')
      .map((text): TagSpec => ({ t: 'literal', text })),
  },
);
/** `arb` about one time in `n`, null otherwise. */
const oneIn = <T,>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: n - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
const noneMatchArb: fc.Arbitrary<TagSpec> = fc.oneof({ weight: 3, arbitrary: fc.constant<TagSpec>({ t: 'star' }) }, { weight: 1, arbitrary: tagArb });
const preArb: fc.Arbitrary<Pre> = fc.record({ ifMatch: oneIn(4, tagArb), ifNoneMatch: oneIn(10, noneMatchArb) });

const jsonCt = fc.constantFrom(
  'application/json', 'application/json', 'application/json', 'application/json', 'application/json; charset=utf-8',
  'application/merge-patch+json', 'APPLICATION/JSON', 'application/json; charset=utf-16',
);
const wrongCt = fc.constantFrom(
  'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'multipart/form-data; boundary=x', '',
  'application/xml', 'application/json, text/plain', '*/*', 'application/jsonx', 'text/json',
);
const malformed = fc.oneof(
  fc.constantFrom(
    '{', '{"a":', 'nul', '{"a":1,}', "{'a':1}", '\u0000', '[', '{"properties":{}}}', '"unterminated', '{"__proto__":{"x":1}}',
    '{"constructor":{"prototype":{"x":1}}}', 'NaN', '{"a":01}', '{"a":1}{"b":2}', '\ufeff{}', '{"a":"\\ud800"}', ' ', 'true', '1', 'null', '"x"',
  ),
  fc.string({ maxLength: 12 }),
);
const bodyModeArb: fc.Arbitrary<BodyMode> = fc.oneof(
  { weight: 30, arbitrary: jsonCt.map((ct): BodyMode => ({ m: 'json', ct })) },
  { weight: 1, arbitrary: fc.constant<BodyMode>({ m: 'none' }) },
  { weight: 1, arbitrary: jsonCt.map((ct): BodyMode => ({ m: 'empty', ct })) },
  { weight: 2, arbitrary: fc.tuple(malformed, fc.option(jsonCt, { freq: 8 })).map(([text, ct]): BodyMode => ({ m: 'text', text, ct })) },
  { weight: 1, arbitrary: jsonCt.map((ct): BodyMode => ({ m: 'oversized', ct })) },
  { weight: 1, arbitrary: fc.constant<BodyMode>({ m: 'array' }) },
  { weight: 2, arbitrary: wrongCt.map((ct): BodyMode => ({ m: 'wrongType', ct })) },
);

const propKey = fc.constantFrom('title', 'n', 'tags', 'a', 'b', '__proto__', 'constructor', '', 'x.y', 'é', 'a"b', '$');
const leaf = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom('x', 'y', '', 'Hello', '\u0000', '\ud800'),
  fc.boolean(),
  fc.constant(null),
);
const propsArb = fc.dictionary(
  propKey,
  fc.oneof({ weight: 4, arbitrary: leaf }, { weight: 1, arbitrary: fc.dictionary(propKey, leaf, { maxKeys: 2 }) }, { weight: 1, arbitrary: fc.array(leaf, { maxLength: 3 }) }),
  { maxKeys: 3 },
);
const nonObject = fc.constantFrom<unknown>(null, 1, 'x', [], [1, 2], true);
const typeArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom<unknown>('node', 'article') },
  { weight: 2, arbitrary: fc.constantFrom<unknown>('root', 'Folder.v1:x-y', '1bad', '', 'a b', 'x'.repeat(129), 12, null, ['node']) },
);
/** A 1-in-n chance. */
const rarely = (n: number) => fc.nat({ max: n - 1 }).map((r) => r === 0);
const putBodyArb = fc
  .tuple(
    fc.option(typeArb, { freq: 2, nil: undefined }),
    fc.option(fc.oneof({ weight: 6, arbitrary: propsArb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: nonObject }), { freq: 8, nil: undefined }),
    rarely(20),
  )
  .map(([type, properties, bogus]) => {
    const body: Record<string, unknown> = {};
    if (type !== undefined) body['type'] = type;
    if (properties !== undefined) body['properties'] = properties;
    if (bogus) body['bogus'] = 1;
    return body;
  });
const patchBodyArb = fc.oneof({ weight: 8, arbitrary: propsArb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: nonObject });

const contentQueryPair: fc.Arbitrary<[string, QVal]> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('true', 'true', 'false', '', 'yes').map((s): [string, QVal] => ['children', { v: 'lit', s }]) },
  { weight: 3, arbitrary: fc.constantFrom('1', '2', '0', '1001', 'abc', '1.5', '-1').map((s): [string, QVal] => ['limit', { v: 'lit', s }]) },
  { weight: 2, arbitrary: fc.tuple(known, cursorMutArb).map(([i, mut]): [string, QVal] => ['cursor', { v: 'cursor', i, mut }]) },
  { weight: 3, arbitrary: fc.constantFrom('true', 'false', '', 'TRUE').map((s): [string, QVal] => ['recursive', { v: 'lit', s }]) },
  { weight: 1, arbitrary: fc.constantFrom('bogus', 'property', '__proto__').map((key): [string, QVal] => [key, { v: 'lit', s: '1' }]) },
  { weight: 1, arbitrary: fc.constant<[string, QVal]>(['limit', { v: 'raw', s: '%zz' }]) },
  // History reads.
  { weight: 2, arbitrary: fc.constantFrom('true', 'true', 'false', '', 'yes').map((s): [string, QVal] => ['versions', { v: 'lit', s }]) },
  { weight: 2, arbitrary: fc.constantFrom('1', '2', '3', '0', '-1', 'abc', '1.5', '99', '9007199254740993').map((s): [string, QVal] => ['version', { v: 'lit', s }]) },
  { weight: 1, arbitrary: fc.constantFrom('true', 'false', 'yes').map((s): [string, QVal] => ['deleted', { v: 'lit', s }]) },
);

const queryKeys = [
  'under', 'type', 'sort', 'limit', 'cursor', 'prop.title', 'prop.n', 'prop.n[gt]', 'prop.n[gte]', 'prop.n[lt]', 'prop.n[lte]', 'prop.n[ne]',
  'prop.title[eq]', 'prop.a.b', 'prop.tags', 'prop.a[zz]', 'prop.', 'prop..x', 'prop."x"', 'prop.a\\b', `prop.${'k.'.repeat(9)}k`, 'prop.$',
  `prop.${'p'.repeat(257)}`, 'prop.a[gt', 'bogus', 'children', '', 'PROP.n', 'prop.é', "prop.'", 'prop.*',
] as const;
const queryLiterals = [
  'node', 'article', '1bad', 'path', '-path', 'name', '-name', 'created', '-created', 'modified', '-modified', 'prop.n', '-prop.title', 'prop.a.b',
  '-', '', '1', '2', '5', '0', '1001', 'abc', '1.5', '-1', 'null', 'true', 'false', '"x"', '"Hello"', '[1]', '{}', '1e400', '-0', '/', 'a', '/a/../b',
] as const;
const qValArb: fc.Arbitrary<QVal> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...queryLiterals).map((s): QVal => ({ v: 'lit', s })) },
  { weight: 3, arbitrary: pathSpecArb.map((p): QVal => ({ v: 'path', p })) },
  { weight: 2, arbitrary: fc.tuple(known, cursorMutArb).map(([i, mut]): QVal => ({ v: 'cursor', i, mut })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }).map((s): QVal => ({ v: 'lit', s })) },
  { weight: 1, arbitrary: fc.constantFrom('%zz', '%', '%C3', '+', '%2B').map((s): QVal => ({ v: 'raw', s })) },
);
/** A query that mostly makes sense, so results and next pages are common. */
const sensibleQuery: fc.Arbitrary<Array<[string, QVal]>> = fc
  .record(
    {
      under: pathSpecArb.map((p): QVal => ({ v: 'path', p })),
      type: fc.constantFrom('node', 'article').map((s): QVal => ({ v: 'lit', s })),
      sort: fc.constantFrom('path', '-path', 'name', '-name', 'created', '-modified', 'prop.n', '-prop.n', 'prop.title', 'prop.a.b').map((s): QVal => ({ v: 'lit', s })),
      limit: fc.constantFrom('1', '2', '3').map((s): QVal => ({ v: 'lit', s })),
      filter: fc.tuple(fc.constantFrom('prop.n', 'prop.n[gt]', 'prop.n[lte]', 'prop.n[ne]', 'prop.title', 'prop.a'), fc.constantFrom('0', '1', '-1.5', 'null', '"x"', 'true', 'x')),
    },
    { requiredKeys: ['limit'] },
  )
  .map((q) => {
    const pairs: Array<[string, QVal]> = [];
    for (const [key, value] of Object.entries(q)) {
      if (key === 'filter') {
        const [k, s] = value as [string, string];
        pairs.push([k, { v: 'lit', s }]);
      } else pairs.push([key, value as QVal]);
    }
    return pairs;
  });
const randomQuery: fc.Arbitrary<Array<[string, QVal]>> = fc.array(fc.tuple(fc.constantFrom(...queryKeys), qValArb), { maxLength: 4 });

const pathValueArb: fc.Arbitrary<PathValue> = fc.oneof(
  { weight: 10, arbitrary: pathSpecArb.map((p): PathValue => ({ pv: 'path', p })) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom<unknown>(null, 1, '', 'a', 'a/b', ['/a'], {}, '/a/../b', '/a/./b', '/..', '/.', '//a', '/a/', '/a\u0000', `/${'n'.repeat(300)}`, '/\ud800')
      .map((value): PathValue => ({ pv: 'literal', value })),
  },
);
const moveFromArb: fc.Arbitrary<PathValue> = fc.oneof(
  { weight: 8, arbitrary: known.map((i): PathValue => ({ pv: 'path', p: { k: 'known', i } })) },
  { weight: 3, arbitrary: pathValueArb },
);
const moveToArb: fc.Arbitrary<PathValue> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(known, childName).map(([i, name]): PathValue => ({ pv: 'path', p: { k: 'knownChild', i, name } })) },
  { weight: 3, arbitrary: childName.map((name): PathValue => ({ pv: 'sibling', name })) },
  { weight: 2, arbitrary: pathValueArb },
  { weight: 1, arbitrary: nameArb.map((name): PathValue => ({ pv: 'fromChild', name })) },
);
const beforeArb = fc.oneof({ weight: 4, arbitrary: nameArb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 1, 'a/b', '..', '') });

// Credentials that make the server run scrypt (Basic for a user not yet verified, a wrong password, an unknown user)
// cost tens of milliseconds each, so they are rare; bearer tokens and the credential cache keep the rest cheap.
const authArb: fc.Arbitrary<AuthChoice> = fc.oneof(
  { weight: 70, arbitrary: fc.constant<AuthChoice>({ a: 'user', name: 'admin', basic: false }) },
  { weight: 12, arbitrary: fc.constant<AuthChoice>({ a: 'user', name: 'reader', basic: false }) },
  { weight: 2, arbitrary: fc.constant<AuthChoice>({ a: 'user', name: 'admin', basic: true }) },
  { weight: 1, arbitrary: fc.constant<AuthChoice>({ a: 'user', name: 'reader', basic: true }) },
  { weight: 2, arbitrary: fc.constant<AuthChoice>({ a: 'user', name: 'alice', basic: true }) },
  { weight: 4, arbitrary: fc.constant<AuthChoice>({ a: 'none' }) },
  { weight: 1, arbitrary: fc.constant<AuthChoice>({ a: 'emptyHeader' }) },
  { weight: 1, arbitrary: fc.constant<AuthChoice>({ a: 'wrongPassword' }) },
  { weight: 1, arbitrary: fc.constant<AuthChoice>({ a: 'unknownUser' }) },
  { weight: 2, arbitrary: fc.nat({ max: 20 }).map((i): AuthChoice => ({ a: 'badScheme', i })) },
  { weight: 2, arbitrary: fc.nat({ max: 20 }).map((i): AuthChoice => ({ a: 'garbageToken', i })) },
);

const noPre: Pre = { ifMatch: null, ifNoneMatch: null };
const jsonBody: BodyMode = { m: 'json', ct: 'application/json' };
/** Schema definitions over the properties the writes use: mostly well formed, some not. */
const schemaRuleArb = fc.record(
  {
    type: fc.constantFrom<unknown>('string', 'integer', 'number', 'boolean', 'array', 'object', 'text'),
    required: fc.constantFrom<unknown>(true, false),
    default: fc.constantFrom<unknown>('d', 1, true, [], null),
    enum: fc.constantFrom<unknown>(['a', 'b'], [1, 2], []),
    maxLength: fc.constantFrom<unknown>(1, 3, -1),
    pattern: fc.constantFrom<unknown>('^[a-z]*$', '^(?:a|b){1,3}$', '(a)\\1', '[', 'x{99}'),
    format: fc.constantFrom<unknown>('date-time', 'email', 'uri', 'phone'),
    renamedFrom: fc.constantFrom<unknown>('title', 'n', 'old'),
  },
  { requiredKeys: [] },
);
const schemaDefinitionArb: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record(
      {
        properties: fc.dictionary(fc.constantFrom('title', 'n', 'tags', 'a', 'x'), schemaRuleArb, { maxKeys: 3 }),
        additionalProperties: fc.boolean(),
        childTypes: fc.constantFrom<unknown>(['node'], ['node', 'article'], [], ['9bad']),
      },
      { requiredKeys: ['properties'] },
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, [], 'x', { properties: [] }, { bogus: 1 }) },
);

/** A well-formed create of a new child of a known node, so that the tree grows within a run. */
const createOp: fc.Arbitrary<Op> = fc
  .record({ i: known, name: childName, type: fc.constantFrom('node', 'article'), properties: propsArb, createOnly: rarely(3) })
  .map(
    (r): Op => ({
      k: 'content',
      method: 'PUT',
      path: { k: 'knownChild', i: r.i, name: r.name },
      rootSlash: false,
      style: { s: 'std' },
      query: [],
      put: { type: r.type, properties: r.properties },
      patch: {},
      body: jsonBody,
      pre: r.createOnly ? { ifMatch: null, ifNoneMatch: { t: 'star' } } : noPre,
    }),
  );

/** A well-formed move of a known node (often one with children) to a new place or name. */
const relocateOp: fc.Arbitrary<Op> = fc
  .record({ from: known, to: fc.oneof(moveToArb, fc.tuple(known, childName).map(([i, name]): PathValue => ({ pv: 'path', p: { k: 'knownChild', i, name } }))) })
  .map((r): Op => ({ k: 'move', from: { pv: 'path', p: { k: 'known', i: r.from } }, to: r.to, before: null, extra: false, body: jsonBody, pre: noPre }));

const batchItemArb: fc.Arbitrary<BatchItem> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({ path: fc.oneof({ weight: 3, arbitrary: fc.tuple(known, childName).map(([i, name]): PathValue => ({ pv: 'path', p: { k: 'knownChild', i, name } })) }, { weight: 1, arbitrary: pathValueArb }), properties: fc.oneof({ weight: 6, arbitrary: propsArb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: nonObject }), createOnly: rarely(3) })
      .map((r): BatchItem => ({ b: 'put', ...r })),
  },
  { weight: 2, arbitrary: fc.record({ path: moveFromArb, patch: patchBodyArb, tag: oneIn(4, tagArb) }).map((r): BatchItem => ({ b: 'patch', ...r })) },
  { weight: 1, arbitrary: fc.record({ path: moveFromArb, recursive: fc.constantFrom<unknown>(true, false, undefined, 'yes') }).map((r): BatchItem => ({ b: 'delete', ...r })) },
  { weight: 1, arbitrary: fc.record({ from: moveFromArb, to: moveToArb }).map((r): BatchItem => ({ b: 'move', ...r })) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 1, 'put', {}, { op: 'setBinary', path: '/a' }, { op: 'put' }, { op: 'batch', operations: [] }).map((value): BatchItem => ({ b: 'junk', value })) },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: createOp },
  { weight: 4, arbitrary: relocateOp },
  {
    weight: 40,
    arbitrary: fc
      .record({
        method: fc.constantFrom('GET', 'GET', 'HEAD', 'PUT', 'PUT', 'PUT', 'PUT', 'PUT', 'PUT', 'PATCH', 'PATCH', 'DELETE', 'POST'),
        path: pathSpecArb,
        rootSlash: fc.boolean(),
        style: urlStyleArb,
        query: fc.array(contentQueryPair, { maxLength: 3 }),
        put: putBodyArb,
        patch: patchBodyArb,
        body: bodyModeArb,
        pre: preArb,
      })
      .map((r): Op => ({ k: 'content', ...r })),
  },
  {
    weight: 12,
    arbitrary: fc
      .record({ from: moveFromArb, to: fc.option(moveToArb, { freq: 6 }), before: oneIn(3, beforeArb), extra: rarely(20), body: bodyModeArb, pre: preArb })
      .map((r): Op => ({ k: 'move', ...r })),
  },
  {
    weight: 6,
    arbitrary: fc
      .record({
        path: moveFromArb,
        order: fc.oneof(
          {
            weight: 4,
            arbitrary: fc
              .tuple(fc.array(fc.nat(), { maxLength: 6 }), fc.constantFrom('none', 'none', 'none', 'drop', 'dup', 'extra', 'bad'))
              .map(([keys, mut]) => ({ o: 'children' as const, keys, mut })),
          },
          { weight: 1, arbitrary: fc.constantFrom<unknown>('x', null, [], [1], ['a', 'a'], ['..'], ['a', 'b', 'c'], {}).map((value) => ({ o: 'literal' as const, value })) },
        ),
        body: bodyModeArb,
        pre: preArb,
      })
      .map((r): Op => ({ k: 'reorder', ...r })),
  },
  { weight: 6, arbitrary: fc.record({ items: fc.array(batchItemArb, { minLength: 0, maxLength: 5 }), body: fc.oneof({ weight: 8, arbitrary: fc.constant(jsonBody) }, { weight: 1, arbitrary: bodyModeArb }) }).map((r): Op => ({ k: 'batch', ...r })) },
  {
    weight: 4,
    arbitrary: fc
      .record({
        path: moveFromArb,
        version: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 4 }) as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: fc.constantFrom<unknown>(0, -1, 1.5, '1', null, 2 ** 60) }),
        id: fc.constantFrom<'none' | 'known' | 'junk'>('none', 'none', 'known', 'junk'),
        idKnown: known,
        to: fc.option(moveToArb, { freq: 4 }),
        extra: rarely(20),
        body: bodyModeArb,
        pre: preArb,
      })
      .map((r): Op => ({ k: 'restore', ...r })),
  },
  {
    // Schemas for the types the writes use: in force at once with no node of the type, else pending behind a
    // migration that the master's job runs meanwhile (jobs.checkIntervalMs); writes of the type meet either.
    weight: 3,
    arbitrary: fc
      .record({
        method: fc.constantFrom<'PUT' | 'DELETE' | 'GET' | 'POLICY'>('PUT', 'PUT', 'PUT', 'DELETE', 'GET', 'POLICY'),
        type: fc.constantFrom('article', 'article', 'node', 'root', '1bad'),
        definition: schemaDefinitionArb,
        required: fc.constantFrom<unknown>(true, false, false, 'yes'),
        body: fc.oneof({ weight: 8, arbitrary: fc.constant(jsonBody) }, { weight: 1, arbitrary: bodyModeArb }),
      })
      .map((r): Op => ({ k: 'schema', ...r })),
  },
  { weight: 7, arbitrary: sensibleQuery.map((params): Op => ({ k: 'query', params })) },
  {
    // Full-text queries, well-formed and not (a malformed one is a 400, never an engine error), with filters.
    weight: 4,
    arbitrary: fc
      .record({
        q: fc.oneof(
          { weight: 4, arbitrary: fc.array(fc.constantFrom('a', 'b*', 'x', 'OR', 'AND', 'NOT', '-c', '"a b"', '(', ')', 'é', 'ab*', '"', 'NEAR', '*', ':'), { maxLength: 6 }).map((w) => w.join(' ')) },
          { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
          { weight: 1, arbitrary: fc.string({ maxLength: 10, unit: 'binary' }) },
        ),
        extra: fc.array(fc.tuple(fc.constantFrom('under', 'type', 'limit', 'cursor', 'prop.a', 'sort', 'q'), fc.constantFrom('/', '/a', 'node', '1', '0', 'x', '')), { maxLength: 2 }),
      })
      .map((r): Op => ({ k: 'search', ...r })),
  },
  {
    // Access entries on nodes, read and written by every kind of user: a refusal changes nothing, a change is a
    // journal entry; later requests meet them (reads then pass over what a user may not read).
    weight: 3,
    arbitrary: fc
      .record({
        method: fc.constantFrom<'GET' | 'PUT'>('GET', 'PUT', 'PUT'),
        path: pathSpecArb,
        style: urlStyleArb,
        entries: fc.oneof(
          {
            weight: 4,
            arbitrary: fc.array(
              fc.record({
                principal: fc.constantFrom('everyone', 'role:reader', 'role:editor', 'user:admin', 'user:ed', 'user:x y'),
                effect: fc.constantFrom('allow', 'deny', 'maybe'),
                permissions: fc.subarray(['read', 'write', 'manage-access', 'admin']),
              }),
              { maxLength: 3 },
            ),
          },
          { weight: 1, arbitrary: fc.jsonValue() },
        ),
        body: fc.oneof({ weight: 8, arbitrary: fc.constant(jsonBody) }, { weight: 1, arbitrary: bodyModeArb }),
      })
      .map((r): Op => ({ k: 'access', ...r })),
  },
  { weight: 1, arbitrary: fc.record({ value: fc.constantFrom<unknown>(true, false, 'no', null), body: fc.oneof({ weight: 8, arbitrary: fc.constant(jsonBody) }, { weight: 1, arbitrary: bodyModeArb }) }).map((r): Op => ({ k: 'searchPolicy', ...r })) },
  { weight: 5, arbitrary: randomQuery.map((params): Op => ({ k: 'query', params })) },
  { weight: 5, arbitrary: fc.tuple(known, cursorMutArb).map(([i, mut]): Op => ({ k: 'nextPage', i, mut })) },
  {
    weight: 4,
    arbitrary: fc
      .oneof(
        { weight: 4, arbitrary: known.map((i) => ({ known: i })) },
        { weight: 1, arbitrary: fc.constantFrom('', 'x', '\u0000', '..', 'x'.repeat(9000), 'é').map((literal) => ({ literal })) },
      )
      .map((id): Op => ({ k: 'nodeById', id })),
  },
  {
    weight: 8,
    arbitrary: fc
      .record({
        method: fc.constantFrom('PUT', 'PUT', 'PUT', 'GET', 'GET', 'HEAD', 'DELETE'),
        path: fc.oneof({ weight: 3, arbitrary: known.map((i): PathSpec => ({ k: 'known', i })) }, { weight: 1, arbitrary: pathSpecArb }),
        style: urlStyleArb,
        property: fc.option(
          fc.oneof({ weight: 8, arbitrary: fc.constantFrom('x', 'y', 'file.v1') }, { weight: 1, arbitrary: fc.constantFrom('bad name', '', 'p'.repeat(130), 'é', '..', 'a/b') }),
          { freq: 15 },
        ),
        extraQuery: rarely(15),
        size: fc.constantFrom(0, 1, 5, 100, 2047, 2048, 2049, 5000),
        seed: fc.nat({ max: 255 }),
        sha: fc.constantFrom('none', 'none', 'none', 'correct', 'wrong', 'malformed', 'digestCorrect', 'digestWrong', 'digestMalformed', 'digestShort'),
        contentType: fc.option(fc.constantFrom('text/plain', 'application/json', 'image/png', '', 'application/octet-stream; x=y')),
        range: oneIn(
          3,
          fc.constantFrom('bytes=0-0', 'bytes=1-2', 'bytes=-1', 'bytes=-0', 'bytes=5-', 'bytes=99999999999999999999-', 'bytes=2-1', 'bytes=0-1,2-3', 'items=0-1', 'bytes=abc', 'bytes=-99999', 'bytes=-'),
        ),
        pre: preArb,
      })
      .map((r): Op => ({ k: 'binary', ...r })),
  },
  {
    weight: 4,
    arbitrary: fc
      .record({
        method: fc.constantFrom('GET', 'LIST', 'PUT', 'PUT', 'PUT', 'DELETE'),
        name: fc.constantFrom('alice', 'alice', 'bob', 'reader', 'admin', '', 'a b', 'x'.repeat(65), 'nobody', 'ALICE', 'x'.repeat(9000)),
        body: fc
          .tuple(
            fc.option(fc.constantFrom<unknown>('password-one', 'password-two', 'password-two', 'short', 'p'.repeat(1025), 123, null), { nil: undefined }),
            fc.option(fc.constantFrom<unknown>(['reader'], ['editor'], ['editor'], ['admin'], ['reader', 'editor'], ['editor', 'editor'], [], ['root'], 'admin', null), { nil: undefined }),
            rarely(15),
          )
          .map(([password, roles, bogus]) => {
            const body: Record<string, unknown> = {};
            if (password !== undefined) body['password'] = password;
            if (roles !== undefined) body['roles'] = roles;
            if (bogus) body['bogus'] = true;
            return body;
          }),
        mode: bodyModeArb,
        createOnly: fc.boolean(),
      })
      .map((r): Op => ({ k: 'user', ...r })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({
        body: fc.record(
          { username: fc.constantFrom<unknown>('admin', 'reader', 'alice', 'nobody', 1), password: fc.constantFrom<unknown>(...passwords, 'wrong-password', 7) },
          { requiredKeys: [] },
        ),
        mode: bodyModeArb,
      })
      .map((r): Op => ({ k: 'login', ...r })),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({
        method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
        url: fc.constantFrom(
          '/api/v1/unknown', '/health/live', '/health/ready', '/api/v1/auth/whoami', '/', '/api/v1', '/api/v1/content/../x', '/api/v1/content/a/./b',
          '/api/v1/move/', '/api/v1/query/', '/api/v1/nodes', '/api/v1/users?x=1', '/api/v1/binaries', '/metrics', '/api//v1/content',
          '/api/v1/content?children=true&children=false', '/api/v1/content/%2e%2e', '/api/v1/users/', '/api/v1/auth/login',
        ),
      })
      .map((r): Op => ({ k: 'misc', ...r })),
  },
);

const reqArb: fc.Arbitrary<Req> = fc.record({ auth: authArb, op: opArb });
/** Runs per test: about 15 s on two cores with the default sequences (up to 40 requests each). */
const runsDefault = 100;

// ---------------------------------------------------------------------------------------------------------------
// A run: what the requests have revealed so far, and the model of users and credentials.
// ---------------------------------------------------------------------------------------------------------------

interface UserModel {
  password: string;
  roles: Role[];
  version: number;
}

class RunState {
  readonly paths: string[] = ['/'];
  readonly etags: string[] = [];
  readonly ids: string[] = [];
  readonly pages: Array<{ url: string; cursor: string }> = [];
  readonly users = new Map<string, UserModel>();
  readonly tokens = new Map<string, { token: string; version: number }>();
  readonly trace: string[] = [];
  baseUrl: string | undefined;

  constructor(template: Template) {
    this.users.set('admin', { password: adminPassword, roles: ['admin'], version: 1 });
    this.users.set('reader', { password: readerPassword, roles: ['reader'], version: 1 });
    this.tokens.set('admin', { token: template.tokens.admin, version: 1 });
    this.tokens.set('reader', { token: template.tokens.reader, version: 1 });
    for (const node of template.nodes) {
      this.paths.push(node.path);
      this.ids.push(node.id);
      this.etags.push(node.etag);
    }
  }

  /** Keeps the newest `max` distinct values; the root stays first in `paths`. */
  remember<T>(list: T[], value: T, max: number): void {
    if (list.includes(value)) return;
    list.push(value);
    if (list.length > max) list.splice(list === (this.paths as unknown[]) ? 1 : 0, 1);
  }
}

function pick<T>(list: readonly T[], i: number): T | undefined {
  return list.length === 0 ? undefined : list[i % list.length];
}

function resolvePath(spec: PathSpec, st: RunState): string {
  switch (spec.k) {
    case 'segs':
      return `/${spec.segs.join('/')}`;
    case 'known':
      return pick(st.paths, spec.i)!;
    case 'knownChild': {
      const parent = pick(st.paths, spec.i)!;
      return parent === '/' ? `/${spec.name}` : `${parent}/${spec.name}`;
    }
    case 'root':
      return '/';
    case 'deep':
      return '/a'.repeat(spec.depth);
    case 'long':
      return `/${Array.from({ length: 20 }, (_, i) => String.fromCharCode(97 + i).repeat(250)).join('/')}`;
  }
}

function resolvePathValue(value: PathValue, st: RunState, from: unknown): unknown {
  switch (value.pv) {
    case 'path':
      return resolvePath(value.p, st);
    case 'literal':
      return value.value;
    case 'fromChild':
      return typeof from === 'string' ? `${from === '/' ? '' : from}/${value.name}` : `/${value.name}`;
    case 'sibling': {
      if (typeof from !== 'string') return `/${value.name}`;
      const cut = from.lastIndexOf('/');
      return `${cut <= 0 ? '' : from.slice(0, cut)}/${value.name}`;
    }
  }
}

const hex = (b: number) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`;

/** Percent-encodes the UTF-8 bytes of a segment (a lone surrogate becomes U+FFFD, as in any UTF-8 client). */
function encodeSegment(text: string, style: 'std' | 'all' | 'minimal'): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(b);
    if (style !== 'all' && /[A-Za-z0-9\-._~]/.test(c)) out += c;
    else if (style === 'minimal' && /[!$&'()*+,;=:@]/.test(c)) out += c;
    else out += hex(b);
  }
  return out;
}

function pathUrl(prefix: string, path: string, style: UrlStyle, rootSlash: boolean): { url: string; badUrl: boolean } {
  if (path === '/') return { url: rootSlash ? `${prefix}/` : prefix, badUrl: false };
  const segs = path
    .slice(1)
    .split('/')
    .map((s) => encodeSegment(s, style.s === 'all' ? 'all' : style.s === 'minimal' ? 'minimal' : 'std'));
  let badUrl = false;
  if (style.s === 'corrupt') {
    segs[style.at % segs.length] += style.bad;
    badUrl = true;
  }
  return { url: `${prefix}/${segs.join(style.s === 'slash2f' ? '%2F' : '/')}`, badUrl };
}

function mutateCursor(cursor: string, mut: CursorMut): string {
  switch (mut.m) {
    case 'none':
      return cursor;
    case 'truncate':
      return cursor.slice(0, Math.floor(cursor.length / 2));
    case 'append':
      return cursor + mut.s;
  }
  let parts: unknown[];
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
  } catch {
    return cursor;
  }
  if (mut.m === 'value') parts[1] = mut.v;
  else if (mut.m === 'id') parts[2] = mut.id;
  else if (mut.m === 'fingerprint') parts[0] = 'children:x';
  else parts.push(1);
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

function queryString(pairs: Array<[string, QVal]>, st: RunState): { text: string; badUrl: boolean } {
  let badUrl = false;
  const parts = pairs.map(([key, value]) => {
    let text: string;
    switch (value.v) {
      case 'lit':
        text = encodeSegment(value.s, 'std');
        break;
      case 'path':
        text = encodeSegment(resolvePath(value.p, st), 'std');
        break;
      case 'cursor': {
        const page = pick(st.pages, value.i);
        text = encodeSegment(page === undefined ? 'bm90LWEtY3Vyc29y' : mutateCursor(page.cursor, value.mut), 'std');
        break;
      }
      case 'raw':
        text = value.s;
        badUrl = true;
        break;
    }
    return `${encodeSegment(key, 'std')}=${text}`;
  });
  return { text: parts.length === 0 ? '' : `?${parts.join('&')}`, badUrl };
}

function etagAt(t: TestNode, path: unknown): string | undefined {
  if (typeof path !== 'string') return undefined;
  const node = t.node.repository.content.nodeByPath(path);
  return node === undefined ? undefined : `"${node.id}:${node.version}"`;
}

function tagText(spec: TagSpec, st: RunState, current: string | undefined): string {
  switch (spec.t) {
    case 'star':
      return '*';
    case 'known':
      return `${spec.weak ? 'W/' : ''}${pick(st.etags, spec.i) ?? '"none-known"'}`;
    case 'current':
      return `${spec.weak ? 'W/' : ''}${current ?? '"no-node-here"'}`;
    case 'list':
      return `"stale", ${pick(st.etags, spec.i) ?? '"none-known"'}`;
    case 'literal':
      return spec.text;
  }
}

function applyPre(headers: Record<string, string>, pre: Pre, st: RunState, current: string | undefined): void {
  if (pre.ifMatch !== null) headers['if-match'] = tagText(pre.ifMatch, st, current);
  if (pre.ifNoneMatch !== null) headers['if-none-match'] = tagText(pre.ifNoneMatch, st, current);
}

function applyBody(headers: Record<string, string>, mode: BodyMode, value: unknown): string | undefined {
  switch (mode.m) {
    case 'json':
      headers['content-type'] = mode.ct;
      return JSON.stringify(value) ?? 'null';
    case 'none':
      return undefined;
    case 'empty':
      headers['content-type'] = mode.ct;
      return '';
    case 'text':
      if (mode.ct !== null) headers['content-type'] = mode.ct;
      return mode.text;
    case 'oversized':
      headers['content-type'] = mode.ct;
      return JSON.stringify({ ...(typeof value === 'object' && value !== null ? value : {}), padding: 'p'.repeat(settings['http.bodyBytesMax']) });
    case 'array':
      headers['content-type'] = 'application/json';
      return JSON.stringify([value]);
    case 'wrongType':
      headers['content-type'] = mode.ct;
      return JSON.stringify(value) ?? 'null';
  }
}

const badSchemes = ['Digest abc', 'Basic', 'Bearer', 'Token x', 'Basic !!!', 'Basic    ', ' Basic x', 'basic', 'Negotiate YQ==', 'Bearer '];

interface Credentials {
  /** The Authorization header to send; undefined: none. */
  readonly header: string | undefined;
  /** What the server must conclude from it. */
  readonly expect: { kind: 'anonymous' } | { kind: 'invalid' } | { kind: 'user'; name: string; roles: readonly Role[] };
}

function credentials(choice: AuthChoice, st: RunState, template: Template): Credentials {
  switch (choice.a) {
    case 'none':
      return { header: undefined, expect: { kind: 'anonymous' } };
    case 'emptyHeader':
      return { header: '', expect: { kind: 'anonymous' } };
    case 'wrongPassword':
      return { header: basic('admin', 'wrong-password!'), expect: { kind: 'invalid' } };
    case 'unknownUser':
      return { header: basic('nobody-here', 'whatever1'), expect: { kind: 'invalid' } };
    case 'badScheme':
      return { header: badSchemes[choice.i % badSchemes.length], expect: { kind: 'invalid' } };
    case 'garbageToken': {
      const real = template.tokens.admin;
      const tokens = [`${real.slice(0, -2)}xx`, 'abc.def.ghi', real.split('.').slice(0, 2).join('.'), `${real}.x`, 'e30.e30.'];
      return { header: `Bearer ${tokens[choice.i % tokens.length]}`, expect: { kind: 'invalid' } };
    }
    case 'user': {
      const user = st.users.get(choice.name);
      if (user === undefined) return { header: basic(choice.name, 'password-one'), expect: { kind: 'invalid' } };
      const token = st.tokens.get(choice.name);
      const header = !choice.basic && token !== undefined && token.version === user.version ? `Bearer ${token.token}` : basic(choice.name, user.password);
      return { header, expect: { kind: 'user', name: choice.name, roles: user.roles } };
    }
  }
}

/** The request as sent, and what the test knows about its route. */
interface Built {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
  /** The permission of the route this request reaches; undefined when the test does not claim to know. */
  permission?: Permission | 'public';
  /** For users PUT/DELETE: how to update the model on success. */
  userUpdate?: { name: string; password?: string; deleted?: boolean };
  loginUser?: string;
  read: boolean;
}

function buildRequest(op: Op, st: RunState, t: TestNode): Built {
  const headers: Record<string, string> = {};
  switch (op.k) {
    case 'content': {
      const path = resolvePath(op.path, st);
      const { url, badUrl } = pathUrl('/api/v1/content', path, op.style, op.rootSlash);
      const qs = queryString(op.query, st);
      applyPre(headers, op.pre, st, etagAt(t, path));
      const body = op.method === 'PUT' ? op.put : op.method === 'PATCH' ? op.patch : op.method === 'GET' || op.method === 'HEAD' ? undefined : {};
      const payload = body === undefined ? undefined : applyBody(headers, op.body, body);
      const permission = badUrl || qs.badUrl ? undefined : op.method === 'GET' || op.method === 'HEAD' ? 'read' : op.method === 'POST' ? undefined : 'write';
      return { method: op.method, url: url + qs.text, headers, payload, permission, read: op.method === 'GET' || op.method === 'HEAD' };
    }
    case 'move': {
      const from = resolvePathValue(op.from, st, undefined);
      const body: Record<string, unknown> = { from };
      if (op.to !== null) body['to'] = resolvePathValue(op.to, st, from);
      if (op.before !== null) body['before'] = op.before;
      if (op.extra) body['extra'] = true;
      applyPre(headers, op.pre, st, etagAt(t, from));
      return { method: 'POST', url: '/api/v1/move', headers, payload: applyBody(headers, op.body, body), permission: 'write', read: false };
    }
    case 'reorder': {
      const path = resolvePathValue(op.path, st, undefined);
      let order: unknown;
      if (op.order.o === 'literal') order = op.order.value;
      else {
        const parent = typeof path === 'string' ? t.node.repository.content.nodeByPath(path) : undefined;
        const names = parent === undefined ? [] : t.node.repository.content.children(parent.id).map((c) => c.name);
        const keys = op.order.keys;
        const shuffled = names.map((name, i) => ({ name, key: keys[i % Math.max(1, keys.length)] ?? i })).sort((x, y) => x.key - y.key).map((x) => x.name);
        if (op.order.mut === 'drop') shuffled.pop();
        else if (op.order.mut === 'dup' && shuffled.length > 0) shuffled.push(shuffled[0]!);
        else if (op.order.mut === 'extra') shuffled.push('not-a-child');
        else if (op.order.mut === 'bad') shuffled.push('..');
        order = shuffled;
      }
      applyPre(headers, op.pre, st, etagAt(t, path));
      return { method: 'POST', url: '/api/v1/reorder', headers, payload: applyBody(headers, op.body, { path, order }), permission: 'write', read: false };
    }
    case 'batch': {
      const operations = op.items.map((item): unknown => {
        switch (item.b) {
          case 'put':
            return { op: 'put', path: resolvePathValue(item.path, st, undefined), properties: item.properties, ...(item.createOnly ? { ifNoneMatch: '*' } : {}) };
          case 'patch': {
            const path = resolvePathValue(item.path, st, undefined);
            return { op: 'patch', path, patch: item.patch, ...(item.tag === null ? {} : { ifMatch: tagText(item.tag, st, etagAt(t, path)) }) };
          }
          case 'delete':
            return { op: 'delete', path: resolvePathValue(item.path, st, undefined), ...(item.recursive === undefined ? {} : { recursive: item.recursive }) };
          case 'move': {
            const from = resolvePathValue(item.from, st, undefined);
            return { op: 'move', from, to: resolvePathValue(item.to, st, from) };
          }
          case 'junk':
            return item.value;
        }
      });
      return { method: 'POST', url: '/api/v1/batch', headers, payload: applyBody(headers, op.body, { operations }), permission: 'write', read: false };
    }
    case 'restore': {
      const path = resolvePathValue(op.path, st, undefined);
      const body: Record<string, unknown> = { path, version: op.version };
      if (op.id === 'known') body['id'] = pick(st.ids, op.idKnown) ?? 'no-id-yet';
      else if (op.id === 'junk') body['id'] = op.idKnown % 2 === 0 ? '' : 'x'.repeat(200);
      if (op.to !== null) body['to'] = resolvePathValue(op.to, st, path);
      if (op.extra) body['extra'] = true;
      applyPre(headers, op.pre, st, etagAt(t, path));
      return { method: 'POST', url: '/api/v1/restore', headers, payload: applyBody(headers, op.body, body), permission: 'write', read: false };
    }
    case 'schema': {
      if (op.method === 'POLICY') {
        return { method: 'PUT', url: '/api/v1/schema-policy', headers, payload: applyBody(headers, op.body, { schemasRequired: op.required }), permission: 'admin', read: false };
      }
      const url = `/api/v1/schemas/${encodeURIComponent(op.type)}`;
      if (op.method === 'GET') return { method: 'GET', url, headers, permission: 'read', read: true };
      if (op.method === 'DELETE') return { method: 'DELETE', url, headers, permission: 'admin', read: false };
      return { method: 'PUT', url, headers, payload: applyBody(headers, op.body, op.definition), permission: 'admin', read: false };
    }
    case 'query': {
      const qs = queryString(op.params, st);
      return { method: 'GET', url: `/api/v1/query${qs.text}`, headers, permission: qs.badUrl ? undefined : 'read', read: true };
    }
    case 'nextPage': {
      const page = pick(st.pages, op.i);
      if (page === undefined) return { method: 'GET', url: '/api/v1/query?limit=1', headers, permission: 'read', read: true };
      const url = `${page.url}${page.url.includes('?') ? '&' : '?'}cursor=${encodeSegment(mutateCursor(page.cursor, op.mut), 'std')}`;
      return { method: 'GET', url, headers, permission: 'read', read: true };
    }
    case 'nodeById': {
      const id = 'known' in op.id ? (pick(st.ids, op.id.known) ?? 'no-id-yet') : op.id.literal;
      const encoded = encodeSegment(id, 'std');
      return { method: 'GET', url: `/api/v1/nodes/${encoded}`, headers, permission: encoded.length > 8192 ? undefined : 'read', read: true };
    }
    case 'search': {
      const qs = [['q', op.q], ...op.extra].map(([k, v]) => `${encodeURIComponent(k!)}=${encodeURIComponent(v!)}`).join('&');
      return { method: 'GET', url: `/api/v1/search?${qs}`, headers, permission: 'read', read: true };
    }
    case 'access': {
      const path = resolvePath(op.path, st);
      const { url, badUrl } = pathUrl('/api/v1/access', path, op.style, true);
      if (op.method === 'GET') return { method: 'GET', url, headers, permission: badUrl ? undefined : 'read', read: true };
      return { method: 'PUT', url, headers, payload: applyBody(headers, op.body, { entries: op.entries }), permission: badUrl ? undefined : 'write', read: false };
    }
    case 'searchPolicy':
      return { method: 'PUT', url: '/api/v1/search-policy', headers, payload: applyBody(headers, op.body, { indexUntypedNodes: op.value }), permission: 'admin', read: false };
    case 'binary': {
      const path = resolvePath(op.path, st);
      const { url, badUrl } = pathUrl('/api/v1/binaries', path, op.style, true);
      const qs = op.property === null ? '' : `?property=${encodeSegment(op.property, 'std')}${op.extraQuery ? '&x=1' : ''}`;
      applyPre(headers, op.pre, st, etagAt(t, path));
      const read = op.method === 'GET' || op.method === 'HEAD';
      const built: Built = { method: op.method, url: url + qs, headers, permission: badUrl ? undefined : read ? 'read' : 'write', read };
      if (op.range !== null) headers['range'] = op.range;
      if (op.method === 'PUT') {
        const payload = Buffer.alloc(op.size);
        for (let i = 0; i < op.size; i++) payload[i] = (op.seed + i * 31) & 0xff;
        const sha = createHash('sha256').update(payload).digest();
        if (op.sha === 'correct') headers['x-conclave-sha256'] = sha.toString('hex');
        else if (op.sha === 'wrong') headers['x-conclave-sha256'] = '0'.repeat(64);
        else if (op.sha === 'malformed') headers['x-conclave-sha256'] = 'xyz';
        else if (op.sha === 'digestCorrect') headers['content-digest'] = `sha-256=:${sha.toString('base64')}:`;
        else if (op.sha === 'digestWrong') headers['content-digest'] = `sha-256=:${Buffer.alloc(32).toString('base64')}:`;
        else if (op.sha === 'digestMalformed') headers['content-digest'] = 'md5=:abc:';
        else if (op.sha === 'digestShort') headers['content-digest'] = 'sha-256=:AAAA:';
        if (op.contentType !== null) headers['content-type'] = op.contentType;
        built.payload = payload;
      }
      return built;
    }
    case 'user': {
      const name = encodeSegment(op.name, 'std');
      const tooLong = name.length > 8192;
      if (op.method === 'LIST') return { method: 'GET', url: '/api/v1/users', headers, permission: 'admin', read: true };
      if (op.method === 'GET') return { method: 'GET', url: `/api/v1/users/${name}`, headers, permission: tooLong ? undefined : 'read', read: true };
      if (op.method === 'DELETE') {
        return { method: 'DELETE', url: `/api/v1/users/${name}`, headers, permission: tooLong ? undefined : 'admin', userUpdate: { name: op.name, deleted: true }, read: false };
      }
      if (op.createOnly) headers['if-none-match'] = '*';
      const password = typeof op.body['password'] === 'string' ? op.body['password'] : undefined;
      return {
        method: 'PUT',
        url: `/api/v1/users/${name}`,
        headers,
        payload: applyBody(headers, op.mode, op.body),
        permission: tooLong ? undefined : 'read',
        userUpdate: { name: op.name, password },
        read: false,
      };
    }
    case 'login': {
      const username = typeof op.body['username'] === 'string' ? op.body['username'] : undefined;
      return { method: 'POST', url: '/api/v1/auth/login', headers, payload: applyBody(headers, op.mode, op.body), permission: 'public', loginUser: username, read: false };
    }
    case 'misc':
      return { method: op.method, url: op.url, headers, read: op.method === 'GET' || op.method === 'HEAD' || op.method === 'OPTIONS' };
  }
}

/** WHATWG URL parsing (which app.inject uses) resolves dot segments; such paths go over a real socket instead. */
function hasDotSegment(url: string): boolean {
  return url
    .split('?')[0]!
    .split('/')
    .some((s) => {
      const d = s.replace(/%2e/gi, '.');
      return d === '.' || d === '..';
    });
}

async function send(t: TestNode, st: RunState, built: Built, authHeader: string | undefined): Promise<ResponseLike> {
  const headers = { ...built.headers };
  if (authHeader !== undefined) headers['authorization'] = authHeader;
  if (hasDotSegment(built.url)) {
    st.baseUrl ??= await t.node.listen();
    return rawRequest(st.baseUrl, { method: built.method, path: built.url, headers, payload: built.payload });
  }
  const res = await t.request({ method: built.method as 'GET', url: built.url, headers, payload: built.payload, auth: null });
  return { statusCode: res.statusCode, headers: res.headers as Record<string, unknown>, body: res.body };
}

/** Learns paths, etags, ids and cursors from a successful JSON answer, and keeps the user model in step. */
function learn(st: RunState, built: Built, res: ResponseLike): void {
  const etag = res.headers['etag'];
  if (typeof etag === 'string' && etag.startsWith('"')) st.remember(st.etags, etag, 32);
  if (res.statusCode >= 300) return;
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    return;
  }
  const visit = (value: unknown): void => {
    if (typeof value !== 'object' || value === null) return;
    if (Array.isArray(value)) {
      value.forEach(visit);
      return;
    }
    const o = value as Record<string, unknown>;
    if (typeof o['path'] === 'string' && typeof o['id'] === 'string' && typeof o['etag'] === 'string') {
      st.remember(st.paths, o['path'], 40);
      st.remember(st.ids, o['id'], 32);
      st.remember(st.etags, o['etag'], 32);
    }
    if (typeof o['nextCursor'] === 'string') {
      const [base, query = ''] = built.url.split('?');
      const kept = query.split('&').filter((p) => p !== '' && !p.startsWith('cursor='));
      st.pages.push({ url: kept.length === 0 ? base! : `${base}?${kept.join('&')}`, cursor: o['nextCursor'] });
      if (st.pages.length > 16) st.pages.shift();
    }
    for (const key of ['items', 'children', 'operations', 'node']) if (key in o) visit(o[key]);
  };
  visit(body);
  if (built.userUpdate !== undefined) {
    const { name, password, deleted } = built.userUpdate;
    if (deleted === true) {
      st.users.delete(name);
    } else {
      const user = body as { roles: Role[]; version: number };
      const previous = st.users.get(name);
      st.users.set(name, { password: password ?? previous!.password, roles: user.roles, version: user.version });
    }
  }
  if (built.loginUser !== undefined) {
    const user = st.users.get(built.loginUser);
    const token = (body as { token?: unknown }).token;
    if (user !== undefined && typeof token === 'string') st.tokens.set(built.loginUser, { token, version: user.version });
  }
}

function describeRequest(built: Built, authHeader: string | undefined, auth: AuthChoice): string {
  const payload = built.payload === undefined ? '' : ` body=${JSON.stringify(clip(Buffer.isBuffer(built.payload) ? `<${built.payload.length} bytes>` : built.payload, 200))}`;
  const headers = Object.entries(built.headers)
    .map(([k, v]) => `${k}: ${JSON.stringify(clip(v, 80))}`)
    .join('; ');
  const who = auth.a === 'user' ? `${auth.name}${auth.basic || authHeader?.startsWith('Basic') ? ' (basic)' : ' (token)'}` : auth.a;
  return `${built.method} ${clip(built.url, 300)} [auth: ${who}]${headers === '' ? '' : ` [${headers}]`}${payload}`;
}

/** Checks one exchange; returns the problems found. */
function problemsOf(built: Built, creds: Credentials, res: ResponseLike, digestBefore: string, digestAfter: string, t: TestNode): string[] {
  const problems: string[] = [];
  const status = res.statusCode;
  if (status >= 500) problems.push(`(a) the server answered ${status}: ${clip(res.body)}`);
  const index = indexHeaderProblem(res);
  if (index !== undefined) problems.push(`(d) ${index}`);
  let code: string | undefined;
  if (status >= 400 && built.method !== 'HEAD') {
    const checked = errorBodyProblem(res);
    if (checked.problem !== undefined) problems.push(`(b) ${checked.problem}`);
    code = checked.code;
  }
  if (status >= 400 && status < 500 && digestAfter !== digestBefore) problems.push(`(c) a ${status} ${code ?? ''} response changed the stored state`);
  if (built.read && status < 400 && digestAfter !== digestBefore) problems.push(`(e) a ${built.method} (${status}) changed the stored state`);
  if (digestAfter !== digestBefore) {
    for (const p of treeProblems(t.node)) problems.push(`(f) ${p}`);
  }
  // (g) authentication and authorisation, where the test knows the route's permission.
  const permission = built.permission;
  if (permission !== undefined && permission !== 'public') {
    const expect = creds.expect;
    const expected =
      expect.kind === 'anonymous'
        ? { status: 401, code: 'AUTH_REQUIRED' }
        : expect.kind === 'invalid'
          ? { status: 401, code: 'AUTH_INVALID' }
          : can({ name: expect.name, roles: expect.roles }, permission)
            ? undefined
            : { status: 403, code: 'FORBIDDEN' };
    if (expected !== undefined) {
      if (status !== expected.status || (built.method !== 'HEAD' && code !== expected.code)) {
        problems.push(`(g) expected ${expected.status} ${expected.code} for a ${permission} route with ${JSON.stringify(expect)}, got ${status} ${code ?? ''}`);
      }
    } else if (status === 401) {
      problems.push(`(g) valid credentials of ${expect.kind === 'user' ? expect.name : '?'} were refused with 401 ${code ?? ''}`);
    }
  }
  return problems;
}

/** Sends requests to one node and checks each exchange; the RunState is the test's model of the node. */
class Runner {
  private readonly st: RunState;

  constructor(
    private readonly t: TestNode,
    private readonly template: Template,
  ) {
    this.st = new RunState(template);
  }

  async execute(req: Req): Promise<void> {
    const { t, st } = this;
    const built = buildRequest(req.op, st, t);
    const creds = credentials(req.auth, st, this.template);
    const before = t.node.repository.content.digest();
    const res = await send(t, st, built, creds.header);
    const afterDigest = t.node.repository.content.digest();
    const line = `${describeRequest(built, creds.header, req.auth)} -> ${res.statusCode} ${clip(res.body.replace(/\s+/g, ' '), 160)}`;
    st.trace.push(line);
    const problems = problemsOf(built, creds, res, before, afterDigest, t);
    if (problems.length > 0) {
      const history = st.trace.slice(-12, -1).map((l, i, all) => `  ${st.trace.length - all.length + i}. ${clip(l, 400)}`);
      throw new Error(
        `${problems.join('\n')}\n\nRequest #${st.trace.length}:\n  ${line}\n` + (history.length > 0 ? `\nThe requests before it in this run:\n${history.join('\n')}\n` : ''),
      );
    }
    learn(st, built, res);
  }
}

/**
 * One request as a fast-check command. fc.commands shrinks a failing sequence to the commands that actually ran
 * (a run stops at its first failing request), which a plain array of requests would not know to do.
 */
class RequestCommand implements fc.AsyncCommand<object, Runner> {
  constructor(readonly req: Req) {}

  check(): boolean {
    return true;
  }

  run(_model: object, runner: Runner): Promise<void> {
    return runner.execute(this.req);
  }

  toString(): string {
    return JSON.stringify(this.req);
  }
}

async function runCommands(template: Template, commands: Iterable<fc.AsyncCommand<object, Runner, boolean>>): Promise<void> {
  const { t, cleanup } = await openFromTemplate(template);
  try {
    await fc.asyncModelRun(() => ({ model: {}, real: new Runner(t, template) }), commands);
  } finally {
    await t.close();
    cleanup();
  }
}

// ---------------------------------------------------------------------------------------------------------------

describe('API properties (random requests)', () => {
  let template: Template;
  before(async () => {
    template = await prepareTemplate();
  });
  after(() => template?.cleanup());

  it('never 5xx; 4xx are catalogue errors that change nothing; every answer has X-Conclave-Index', async (t: TestContext) => {
    const env = (name: string) => (process.env[name] === undefined || process.env[name] === '' ? undefined : process.env[name]);
    const seed = env('CONCLAVE_TEST_SEED') === undefined ? (Date.now() ^ Math.floor(Math.random() * 0x100000000)) | 0 : Number(env('CONCLAVE_TEST_SEED'));
    assert.ok(Number.isInteger(seed), `CONCLAVE_TEST_SEED must be an integer, not ${env('CONCLAVE_TEST_SEED')}`);
    const numRuns = Number(env('CONCLAVE_TEST_RUNS') ?? runsDefault);
    t.diagnostic(`fast-check seed ${seed}, ${numRuns} runs (replay with CONCLAVE_TEST_SEED=${seed})`);
    const commands = fc.commands([reqArb.map((req) => new RequestCommand(req))], {
      maxCommands: 40,
      size: 'max',
      replayPath: env('CONCLAVE_TEST_REPLAY_PATH'),
    });
    const property = fc.asyncProperty(commands, (cmds) => runCommands(template, cmds));
    const details = await fc.check(property, { seed, path: env('CONCLAVE_TEST_PATH'), numRuns, includeErrorInReport: true });
    if (details.failed) {
      const report = fc.defaultReportMessage(details) ?? 'the property failed';
      const replayPath = /replayPath="([^"]*)"/.exec(report)?.[1];
      const replay =
        `Replay: CONCLAVE_TEST_SEED=${details.seed} CONCLAVE_TEST_PATH=${details.counterexamplePath ?? ''}` +
        (replayPath === undefined ? '' : ` CONCLAVE_TEST_REPLAY_PATH=${replayPath}`);
      throw new Error(`${report}\n\n${replay}`, { cause: details.errorInstance });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The most important refusals, as examples: each is a catalogue error, carries X-Conclave-Index and changes nothing.
// ---------------------------------------------------------------------------------------------------------------

function assertRefusal(res: ResponseLike, status: number, code: keyof typeof errorCatalogue, before: string, after: string): void {
  assert.equal(res.statusCode, status, res.body);
  const checked = errorBodyProblem(res);
  assert.equal(checked.problem, undefined, checked.problem);
  assert.equal(checked.code, code);
  assert.equal(indexHeaderProblem(res), undefined);
  assert.equal(after, before, 'a refused request changed the stored state');
}

describe('API refusals (examples)', () => {
  let t: TestNode;
  const digest = () => t.node.repository.content.digest();
  before(async () => {
    t = await openTestNode(settings);
    for (const path of ['/a', '/a/b']) {
      const res = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties: { n: 1 } }) });
      assert.equal(res.statusCode, 201, res.body);
    }
  });
  after(async () => {
    await t?.close();
  });

  it('malformed JSON is 400 INVALID_JSON', async () => {
    for (const [method, url] of [['PUT', '/api/v1/content/a'], ['PATCH', '/api/v1/content/a'], ['POST', '/api/v1/move']] as const) {
      const before = digest();
      const res = await t.request({ method, url, payload: '{"properties": {"n": 2}', headers: { 'content-type': 'application/json' } });
      assertRefusal(res, 400, 'INVALID_JSON', before, digest());
    }
  });

  it('a path with ".." is 400 INVALID_PATH, in a URL and in a body', async () => {
    const base = await t.node.listen();
    for (const path of ['/api/v1/content/a/../x', '/api/v1/content/a/..', '/api/v1/content/a/%2E%2E/x']) {
      const before = digest();
      const res = await rawRequest(base, { method: 'PUT', path, headers: { authorization: basic('admin', adminPassword), 'content-type': 'application/json' }, payload: '{}' });
      assertRefusal(res, 400, 'INVALID_PATH', before, digest());
    }
    for (const body of [{ from: '/a/b', to: '/a/../b' }, { from: '/a/../a/b', to: '/c' }, { from: '/a', before: '..' }]) {
      const before = digest();
      const res = await t.request({ method: 'POST', url: '/api/v1/move', ...json(body) });
      assertRefusal(res, 400, 'INVALID_PATH', before, digest());
    }
    const before = digest();
    const res = await t.request({ method: 'GET', url: '/api/v1/query?under=%2Fa%2F..' });
    assertRefusal(res, 400, 'INVALID_PATH', before, digest());
  });

  it('an oversized body is 413 BODY_TOO_LARGE', async () => {
    const before = digest();
    const res = await t.request({ method: 'PUT', url: '/api/v1/content/big', ...json({ properties: { text: 'x'.repeat(5000) } }) });
    assertRefusal(res, 413, 'BODY_TOO_LARGE', before, digest());
    const patched = await t.request({
      method: 'PATCH',
      url: '/api/v1/content/a',
      payload: JSON.stringify({ text: 'x'.repeat(5000) }),
      headers: { 'content-type': 'application/merge-patch+json' },
    });
    assertRefusal(patched, 413, 'BODY_TOO_LARGE', before, digest());
  });

  it('a missing parent is 409 PARENT_NOT_FOUND', async () => {
    const before = digest();
    const res = await t.request({ method: 'PUT', url: '/api/v1/content/missing/child', ...json({ properties: {} }) });
    assertRefusal(res, 409, 'PARENT_NOT_FOUND', before, digest());
    const moved = await t.request({ method: 'POST', url: '/api/v1/move', ...json({ from: '/a/b', to: '/missing/b' }) });
    assertRefusal(moved, 409, 'PARENT_NOT_FOUND', before, digest());
  });

  it('a failed If-Match is 412 PRECONDITION_FAILED', async () => {
    const first = await t.request({ method: 'GET', url: '/api/v1/content/a' });
    const staleTag = first.headers['etag'] as string;
    const changed = await t.request({ method: 'PATCH', url: '/api/v1/content/a', headers: { 'content-type': 'application/json', 'if-match': staleTag }, payload: '{"n": 3}' });
    assert.equal(changed.statusCode, 200, changed.body);
    const requests: Array<{ method: 'PUT' | 'PATCH' | 'DELETE' | 'POST'; url: string; payload?: string; headers?: Record<string, string> }> = [
      { method: 'PUT' as const, url: '/api/v1/content/a', ...json({ properties: { n: 4 } }) },
      { method: 'PATCH' as const, url: '/api/v1/content/a', ...json({ n: 4 }) },
      { method: 'DELETE' as const, url: '/api/v1/content/a?recursive=true' },
      { method: 'POST' as const, url: '/api/v1/move', ...json({ from: '/a', to: '/renamed' }) },
      { method: 'POST' as const, url: '/api/v1/reorder', ...json({ path: '/a', order: ['b'] }) },
    ];
    for (const request of requests) {
      const before = digest();
      const res = await t.request({ ...request, headers: { ...(request.headers ?? {}), 'if-match': staleTag } });
      assertRefusal(res, 412, 'PRECONDITION_FAILED', before, digest());
    }
    const before = digest();
    const missing = await t.request({ method: 'PUT', url: '/api/v1/content/nothing-here', headers: { 'content-type': 'application/json', 'if-match': '*' }, payload: '{}' });
    assertRefusal(missing, 412, 'PRECONDITION_FAILED', before, digest());
  });

  it('a reader\'s writes are 403 FORBIDDEN and change nothing', async () => {
    const created = await t.request({ method: 'PUT', url: '/api/v1/users/reader', ...json({ password: readerPassword, roles: ['reader'] }) });
    assert.equal(created.statusCode, 201, created.body);
    const auth = basic('reader', readerPassword);
    for (const request of [
      { method: 'PUT' as const, url: '/api/v1/content/by-reader', ...json({}) },
      { method: 'PATCH' as const, url: '/api/v1/content/a', ...json({ n: 9 }) },
      { method: 'DELETE' as const, url: '/api/v1/content/a?recursive=true' },
      { method: 'POST' as const, url: '/api/v1/move', ...json({ from: '/a', to: '/r' }) },
      { method: 'POST' as const, url: '/api/v1/reorder', ...json({ path: '/a', order: ['b'] }) },
      { method: 'PUT' as const, url: '/api/v1/binaries/a?property=x', payload: 'data', headers: { 'content-type': 'text/plain' } },
      { method: 'PUT' as const, url: '/api/v1/content/a', payload: '{', headers: { 'content-type': 'application/json' } },
    ]) {
      const before = digest();
      const res = await t.request({ ...request, auth });
      assertRefusal(res, 403, 'FORBIDDEN', before, digest());
    }
    const read = await t.request({ method: 'GET', url: '/api/v1/content/a', auth });
    assert.equal(read.statusCode, 200, read.body);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Defects the property test found, each as its smallest example. They fail until src is fixed.
// ---------------------------------------------------------------------------------------------------------------

describe('API defects found by the property test', () => {
  let t: TestNode;
  const digest = () => t.node.repository.content.digest();
  beforeEach(async () => {
    t = await openTestNode(settings);
  });
  afterEach(async () => {
    await t?.close();
  });

  it('a URL with an invalid percent-encoding is a catalogue 400 with X-Conclave-Index', async () => {
    for (const url of ['/api/v1/content/%zz', '/api/v1/content/a%', '/api/v1/content/%ED%A0%80', '/api/v1/users/%zz']) {
      const before = digest();
      const res = await t.request({ method: 'GET', url });
      assert.equal(res.statusCode, 400, res.body);
      assert.equal(errorBodyProblem(res).problem, undefined, `${url}: ${errorBodyProblem(res).problem}`);
      assert.equal(indexHeaderProblem(res), undefined, url);
      assert.equal(digest(), before);
    }
  });

  it('an over-long route parameter is a catalogue 4xx with X-Conclave-Index', async () => {
    for (const url of [`/api/v1/nodes/${'x'.repeat(9000)}`, `/api/v1/users/${'x'.repeat(9000)}`]) {
      const res = await t.request({ method: 'GET', url });
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${res.statusCode} ${res.body.slice(0, 200)}`);
      assert.equal(errorBodyProblem(res).problem, undefined, errorBodyProblem(res).problem);
      assert.equal(indexHeaderProblem(res), undefined);
    }
  });

  it('creating a node whose name is outside Latin-1 answers 201, not 500', async () => {
    for (const name of ['ж', '😀', '€uro']) {
      const res = await t.request({ method: 'PUT', url: `/api/v1/content/${encodeURIComponent(name)}`, ...json({}) });
      assert.equal(res.statusCode, 201, `${name}: ${res.body.slice(0, 200)}`);
      assert.equal((JSON.parse(res.body) as { path: string }).path, `/${name}`);
    }
  });

  it('moving a node whose name has a character outside the BMP keeps its descendants\' paths', async () => {
    for (const path of ['/m', '/m/child']) {
      const res = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({}) });
      assert.equal(res.statusCode, 201, res.body);
    }
    for (const [from, to] of [['/m', '/😀'], ['/😀', '/z']]) {
      const res = await t.request({ method: 'POST', url: '/api/v1/move', ...json({ from, to }) });
      assert.equal(res.statusCode, 200, res.body);
    }
    assert.deepEqual(treeProblems(t.node), []);
    const child = await t.request({ method: 'GET', url: '/api/v1/content/z/child' });
    assert.equal(child.statusCode, 200, child.body);
  });

  it('a move never makes a stored path deeper or longer than the API accepts', async () => {
    let path = '';
    for (let i = 0; i < 60; i++) {
      path += '/d';
      const res = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({}) });
      assert.equal(res.statusCode, 201, res.body);
    }
    let target = '';
    for (let i = 0; i < 8; i++) {
      target += '/t';
      const res = await t.request({ method: 'PUT', url: `/api/v1/content${target}`, ...json({}) });
      assert.equal(res.statusCode, 201, res.body);
    }
    const before = digest();
    const res = await t.request({ method: 'POST', url: '/api/v1/move', ...json({ from: '/d', to: `${target}/d` }) });
    if (res.statusCode >= 400) {
      assert.equal(errorBodyProblem(res).problem, undefined);
      assert.equal(digest(), before);
    }
    assert.deepEqual(treeProblems(t.node), [], `the move answered ${res.statusCode}`);
  });
});

/**
 * Issue 13: one JSON parser for every JSON content type. Arbitrary documents (test/helpers/jsonDocuments.ts) go
 * through every body that carries one — PUT, PATCH as application/merge-patch+json and as application/json, a
 * user's password — and each is either stored and read back exactly, or refused with the same catalogue code
 * whatever the content type, nothing changed. (test/process/jsonRoundTrip.test.ts takes the same documents
 * through a cluster: forwarded, replicated, restarted.)
 */
describe('JSON bodies: one parser, one set of rules (issue 13)', () => {
  let t: TestNode;
  const digest = () => t.node.repository.content.digest();
  before(async () => {
    t = await openTestNode({ 'http.bodyBytesMax': 4 * 1024 * 1024 });
    const res = await t.request({ method: 'PUT', url: '/api/v1/content/docs', ...json({ properties: {} }) });
    assert.equal(res.statusCode, 201, res.body);
  });
  after(async () => {
    await t?.close();
  });

  const read = async (path: string) => {
    const res = await t.request({ method: 'GET', url: `/api/v1/content${path}` });
    assert.equal(res.statusCode, 200, res.body);
    return JSON.stringify((res.json() as { properties: unknown }).properties);
  };

  it('every document is stored and read back exactly, or refused with one code whatever its content type', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(jsonDocument, async (doc) => {
        run++;
        const refusals = refusalsOf(doc);
        const tooDeep = depthOf(doc) > 32;
        const text = JSON.stringify(doc);
        const bodies = [
          { method: 'PUT' as const, url: `/api/v1/content/docs/put${run}`, type: 'application/json', payload: `{"properties":${text}}` },
          { method: 'PATCH' as const, url: '/api/v1/content/docs', type: 'application/merge-patch+json', payload: text },
          { method: 'PATCH' as const, url: '/api/v1/content/docs', type: 'application/json', payload: text },
        ];
        for (const body of bodies) {
          const before = digest();
          const beforeDocs = await read('/docs');
          const res = await t.request({ method: body.method, url: body.url, payload: body.payload, headers: { 'content-type': body.type } });
          if (refusals.length > 0) {
            assert.equal(res.statusCode, 400, `${body.method} ${body.type}: ${res.body}`);
            const code = (res.json() as { error: { code: string } }).error.code;
            assert.ok((refusals as string[]).includes(code), `${body.method} ${body.type}: ${code}, expected one of ${refusals.join(', ')}`);
            assert.equal(digest(), before);
            continue;
          }
          if (tooDeep) {
            assertRefusal(res, 400, 'INVALID_PROPERTIES', before, digest());
            continue;
          }
          assert.ok(res.statusCode === 200 || res.statusCode === 201, `${body.method} ${body.type}: ${res.statusCode} ${clip(res.body)}`);
          const expected = body.method === 'PUT' ? text : JSON.stringify(applyMergePatch(JSON.parse(beforeDocs) as JsonValue, doc as JsonValue));
          assert.equal(await read(body.method === 'PUT' ? `/docs/put${run}` : '/docs'), expected, `${body.method} ${body.type} read back`);
        }
        // A user's password is a JSON string too: the same rules (the journal holds its hash, never the text).
        const password = `password-${text}`.slice(0, 100);
        const before = digest();
        const res = await t.request({ method: 'PUT', url: `/api/v1/users/user${run % 3}`, payload: JSON.stringify({ password, roles: ['reader'] }), headers: { 'content-type': 'application/json' } });
        if (refusalsOf(password).length > 0) assertRefusal(res, 400, 'INVALID_UNICODE', before, digest());
        else assert.ok(res.statusCode === 200 || res.statusCode === 201, res.body);
      }),
      { ...propertyParameters(60), includeErrorInReport: true },
    );
  });

  it('"__proto__" is refused as PROPERTY_NAME_REFUSED, naming the key and its path, for every JSON content type', async () => {
    for (const type of ['application/json', 'application/merge-patch+json', 'application/json; charset=utf-8']) {
      const before = digest();
      const res = await t.request({ method: 'PATCH', url: '/api/v1/content/docs', payload: '{"a": {"__proto__": {"x": 1}}}', headers: { 'content-type': type } });
      assertRefusal(res, 400, 'PROPERTY_NAME_REFUSED', before, digest());
      const error = (res.json() as { error: { message: string; name: string; path: string } }).error;
      assert.deepEqual([error.name, error.path], ['__proto__', '/a/__proto__']);
      assert.match(error.message, /"__proto__"/);
      assert.doesNotMatch(error.message, /not valid JSON/);
    }
  });

  it('"constructor" and "prototype" are plain data', async () => {
    const properties = { constructor: { prototype: { polluted: true } }, prototype: 1 };
    const res = await t.request({ method: 'PUT', url: '/api/v1/content/docs/words', ...json({ properties }) });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(await read('/docs/words'), JSON.stringify(properties));
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
  });

  it('INVALID_JSON says once that the body is not valid JSON, and where', async () => {
    for (const payload of ['{"properties": ', 'x'.repeat(40), '{"a": 1}}']) {
      const res = await t.request({ method: 'PUT', url: '/api/v1/content/docs/x', payload, headers: { 'content-type': 'application/json' } });
      assert.equal(res.statusCode, 400);
      const message = (res.json() as { error: { code: string; message: string } }).error.message;
      assert.equal(message.match(/not valid JSON/g)?.length, 1, message);
    }
  });
});
