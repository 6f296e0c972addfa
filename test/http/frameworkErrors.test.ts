import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import fc from 'fast-check';

import { propertyParameters } from '../sim/testSeed.js';
import { errorBodyProblem, indexHeaderProblem } from '../helpers/apiChecks.js';
import { adminAuth, json, openTestNode, type TestNode } from '../helpers/app.js';
import { rawExchange, type ResponseLike } from '../helpers/rawHttp.js';

/**
 * Every error answers in the catalogue's format, including those raised before a route runs — by Node's HTTP parser
 * (431, malformed requests), its server (Expect, a missing Host) or Fastify (404, 413, 415, a malformed URL) —
 * and If-Match says what is wrong with a tag instead of "the node has changed".
 */
let t: TestNode;
let url: string;
before(async () => {
  t = await openTestNode({ 'http.bodyBytesMax': 4096 });
  url = await t.node.listen();
});
after(async () => {
  await t.close();
});

function assertCatalogueError(answer: ResponseLike | null, status: number, code: string, what: string): void {
  assert.ok(answer !== null, `${what}: the server answered`);
  assert.equal(answer.statusCode, status, `${what}: ${answer.body}`);
  const { code: given, problem } = errorBodyProblem(answer);
  assert.equal(problem, undefined, what);
  assert.equal(given, code, what);
  assert.equal(indexHeaderProblem(answer), undefined, what);
}

const request = (head: string, body = '') => `${head}\r\nHost: test\r\nAuthorization: ${adminAuth}\r\nConnection: close\r\n${body}`;

test('errors raised before any route runs answer in the catalogue format', async () => {
  const cases: ReadonlyArray<[string, string, number, string]> = [
    ['headers over the limit', request('GET /api/v1/content HTTP/1.1', `X-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431, 'HEADERS_TOO_LARGE'],
    ['a URL over the header limit', request(`GET /api/v1/content/${'a'.repeat(20_000)} HTTP/1.1`, '\r\n'), 431, 'HEADERS_TOO_LARGE'],
    ['a malformed request line', 'GARBAGE\r\n\r\n', 400, 'INVALID_REQUEST'],
    ['a control character in a header name', request('GET /api/v1/content HTTP/1.1', 'X\u0001: y\r\n\r\n'), 400, 'INVALID_REQUEST'],
    ['Content-Length and Transfer-Encoding both', request('PUT /api/v1/content/a HTTP/1.1', 'Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}'), 400, 'INVALID_REQUEST'],
    ['a broken chunk', request('PUT /api/v1/content/a HTTP/1.1', 'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'), 400, 'INVALID_REQUEST'],
    ['an unknown transfer coding', request('PUT /api/v1/content/a HTTP/1.1', 'Content-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n{}'), 400, 'INVALID_REQUEST'],
    ['an HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400, 'INVALID_REQUEST'],
    ['no Host in HTTP/1.1', 'GET /health/live HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'INVALID_REQUEST'],
    ['an Expect other than 100-continue', request('PUT /api/v1/content/a HTTP/1.1', 'Content-Type: application/json\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}'), 417, 'EXPECTATION_FAILED'],
    ['an unknown route', request('GET /nowhere HTTP/1.1', '\r\n'), 404, 'ROUTE_NOT_FOUND'],
    ['a body over http.bodyBytesMax', request('PUT /api/v1/content/a HTTP/1.1', `Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"properties":{"a":"${'x'.repeat(4970)}"}}`), 413, 'BODY_TOO_LARGE'],
    ['an unsupported media type', request('PUT /api/v1/content/a HTTP/1.1', 'Content-Type: text/html\r\nContent-Length: 2\r\n\r\n{}'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['a malformed Content-Type', request('PUT /api/v1/content/a HTTP/1.1', 'Content-Type: ;;;\r\nContent-Length: 2\r\n\r\n{}'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['a malformed percent-encoding', request('GET /api/v1/content/%zz HTTP/1.1', '\r\n'), 400, 'INVALID_PATH'],
  ];
  for (const [what, bytes, status, code] of cases) {
    assertCatalogueError(await rawExchange(url, bytes), status, code, what);
  }
  // The node still serves after each of them.
  const live = await rawExchange(url, 'GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n');
  assert.equal(live?.statusCode, 200);
});

const headerName = fc.oneof(
  fc.constantFrom('X-Thing', 'Accept', 'If-Match', 'If-None-Match', 'Content-Type', 'Range', 'X-Conclave-Min-Index', 'Expect', 'Authorization', 'Host'),
  fc.string({ unit: 'binary-ascii', minLength: 0, maxLength: 12 }),
).filter((name) => !/content-length|transfer-encoding|connection/i.test(name));
const headerValue = fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 40 }), fc.constantFrom('W/"x"', '"a b"', '*', 'bytes=0-1', 'application/json', 'Basic !!!'));
const requestArb = fc.record({
  method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'BREW', 'get', ''),
  target: fc.oneof(
    fc.constantFrom('/api/v1/content', '/api/v1/content/a%zz', '/health/ready', '*', '/api/v1/move', '/api/v1/users/admin', 'http://x/health/live'),
    fc.string({ unit: 'binary-ascii', maxLength: 30 }).map((s) => `/api/v1/content/${s}`),
  ),
  version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 extra', ''),
  headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }),
  oversized: fc.boolean(),
});

test('whatever arrives on the socket, an error answer is in the catalogue format (property)', async () => {
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(requestArb, async (r) => {
      const headers = r.headers.map(([name, value]) => `${name}: ${value}\r\n`).join('');
      const big = r.oversized ? `X-Big: ${'b'.repeat(17_000)}\r\n` : '';
      const bytes = `${r.method} ${r.target} ${r.version}\r\nHost: test\r\n${headers}${big}Connection: close\r\n\r\n`;
      const answer = await rawExchange(url, Buffer.from(bytes, 'latin1'));
      if (answer === null) return; // closed without a word: allowed for bytes that are not a request at all
      answered++;
      if (answer.statusCode < 400) return;
      const { problem } = errorBodyProblem(answer);
      assert.equal(problem, undefined, `${JSON.stringify(bytes.slice(0, 200))} → ${answer.statusCode} ${answer.body}`);
      assert.equal(indexHeaderProblem(answer), undefined);
    }),
    propertyParameters(150),
  );
  assert.ok(answered > 100, `most requests got an answer (${answered})`);
});

test('If-Match: a weak tag is refused (412) as weak, a malformed one is 400, and nothing is proposed', async () => {
  const created = await t.request({ method: 'PUT', url: '/api/v1/content/tagged', ...json({ properties: { v: 1 } }) });
  assert.equal(created.statusCode, 201);
  const etag = String(created.headers['etag']);
  const put = (ifMatch: string) =>
    t.request({ method: 'PUT', url: '/api/v1/content/tagged', ...json({ properties: { v: 2 } }), headers: { 'content-type': 'application/json', 'if-match': ifMatch } });
  const indexBefore = t.node.repository.appliedIndex;

  const weak = await put(`W/${etag}`);
  assert.equal(weak.statusCode, 412);
  assert.equal(weak.json().error.code, 'PRECONDITION_FAILED');
  assert.match(weak.json().error.message, /weak/);
  assert.doesNotMatch(weak.json().error.message, /has changed/);

  for (const malformed of ['"a b"', 'unquoted', `${etag} junk`, `W/${etag} W/${etag}`, '"x', '']) {
    const answer = await put(malformed);
    assert.equal(answer.statusCode, 400, `If-Match: ${malformed} → ${answer.body}`);
    assert.equal(answer.json().error.code, 'INVALID_REQUEST');
    assert.match(answer.json().error.message, /If-Match/);
  }
  assert.equal(t.node.repository.appliedIndex, indexBefore, 'no refused precondition was journaled');

  // A strong tag beside a weak one still counts; one of another node says so rather than "changed".
  const mixed = await put(`W/"whatever", ${etag}`);
  assert.equal(mixed.statusCode, 200, mixed.body);
  const stale = await put(etag);
  assert.equal(stale.statusCode, 412);
  assert.match(stale.json().error.message, /has changed/);
  const foreign = await put('"not-this-node:1"');
  assert.equal(foreign.statusCode, 412);
  assert.match(foreign.json().error.message, /no tag given names the node/);
});
