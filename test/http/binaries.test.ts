import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

let t: TestNode;
const bytesMax = 64 * 1024;
before(async () => {
  t = await openTestNode({ 'content.binaryBytesMax': bytesMax });
  await t.request({ method: 'PUT', url: '/api/v1/content/files', ...json({}) });
  await t.request({ method: 'PUT', url: '/api/v1/content/files/a', ...json({}) });
  await t.request({ method: 'PUT', url: '/api/v1/content/files/b', ...json({}) });
});
after(async () => {
  await t.close();
});

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const data = Buffer.from(Array.from({ length: 40_000 }, (_, i) => (i * 31) % 251));

/** A body that arrives in chunks, as a stream: the server must not need it whole. */
function chunked(buffer: Buffer, chunkBytes = 4096): Readable {
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= buffer.length) this.push(null);
      else {
        this.push(buffer.subarray(offset, offset + chunkBytes));
        offset += chunkBytes;
      }
    },
  });
}

function upload(path: string, body: Buffer | Readable, headers: Record<string, string> = {}) {
  return t.request({
    method: 'PUT',
    url: `/api/v1/binaries${path}?property=file`,
    payload: body,
    headers: { 'content-type': 'application/x-test', ...headers },
  });
}

function storedBlobs(): string[] {
  const root = join(t.dir, 'blobs');
  const out: string[] = [];
  for (const a of readdirSync(root)) {
    if (a === 'tmp') continue;
    for (const b of readdirSync(join(root, a))) out.push(...readdirSync(join(root, a, b)));
  }
  return out;
}

test('streamed upload is stored by SHA-256, de-duplicated, and read back whole and in ranges', async () => {
  const first = await upload('/files/a', chunked(data), { 'x-conclave-sha256': sha256(data) });
  assert.equal(first.statusCode, 200, first.body);
  assert.deepEqual(first.json().binaries.file, { sha256: sha256(data), size: data.length, contentType: 'application/x-test' });
  const digest = createHash('sha256').update(data).digest('base64');
  const second = await upload('/files/b', chunked(data, 1000), { 'content-digest': `sha-256=:${digest}:` });
  assert.equal(second.statusCode, 200, second.body);
  assert.deepEqual(storedBlobs(), [sha256(data)]);

  const whole = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file' });
  assert.equal(whole.statusCode, 200);
  assert.equal(whole.headers['content-type'], 'application/x-test');
  assert.equal(whole.headers['accept-ranges'], 'bytes');
  assert.ok(whole.rawPayload.equals(data));

  const part = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { range: 'bytes=100-199' } });
  assert.equal(part.statusCode, 206);
  assert.equal(part.headers['content-range'], `bytes 100-199/${data.length}`);
  assert.ok(part.rawPayload.equals(data.subarray(100, 200)));
  const suffix = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { range: 'bytes=-10' } });
  assert.ok(suffix.rawPayload.equals(data.subarray(data.length - 10)));
  const open = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { range: 'bytes=39990-' } });
  assert.ok(open.rawPayload.equals(data.subarray(39990)));
  const outside = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { range: 'bytes=50000-' } });
  assert.equal(outside.statusCode, 416);
  assert.equal(outside.headers['content-range'], `bytes */${data.length}`);
  assert.equal(outside.json().error.code, 'RANGE_NOT_SATISFIABLE');

  const head = await t.request({ method: 'HEAD', url: '/api/v1/binaries/files/a?property=file' });
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers['content-length'], String(data.length));
  const cached = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { 'if-none-match': `"${sha256(data)}"` } });
  assert.equal(cached.statusCode, 304);
});

test('a checksum mismatch or an oversized upload stores nothing', async () => {
  const before = t.node.repository.content.digest();
  const blobsBefore = storedBlobs();
  const other = Buffer.from('different content');
  const mismatch = await upload('/files/a', other, { 'x-conclave-sha256': sha256(data) });
  assert.equal(mismatch.statusCode, 400);
  assert.equal(mismatch.json().error.code, 'CHECKSUM_MISMATCH');
  const big = Buffer.alloc(bytesMax + 1, 7);
  const tooBig = await upload('/files/a', chunked(big));
  assert.equal(tooBig.statusCode, 413);
  assert.equal(tooBig.json().error.code, 'BINARY_TOO_LARGE');
  const declared = await upload('/files/a', big);
  assert.equal(declared.statusCode, 413);
  const missing = await upload('/files/none', Buffer.from('x'));
  assert.equal(missing.json().error.code, 'NODE_NOT_FOUND');
  const badName = await t.request({ method: 'PUT', url: '/api/v1/binaries/files/a?property=bad%20name', payload: 'x' });
  assert.equal(badName.json().error.code, 'INVALID_REQUEST');
  assert.equal(t.node.repository.content.digest(), before);
  assert.deepEqual(storedBlobs(), blobsBefore);
  assert.deepEqual(readdirSync(join(t.dir, 'blobs', 'tmp')), [], 'no partial upload is left behind');
});

test('a binary can be deleted; then reads say BINARY_NOT_FOUND', async () => {
  await upload('/files/b', Buffer.from('bye'));
  const deleted = await t.request({ method: 'DELETE', url: '/api/v1/binaries/files/b?property=file' });
  assert.equal(deleted.statusCode, 200);
  assert.deepEqual(deleted.json().binaries, {});
  const gone = await t.request({ method: 'GET', url: '/api/v1/binaries/files/b?property=file' });
  assert.equal(gone.statusCode, 404);
  assert.equal(gone.json().error.code, 'BINARY_NOT_FOUND');
});

test('served binaries cannot run as pages; If-Range and weak If-None-Match follow RFC 9110', async () => {
  await upload('/files/a', Buffer.from('<script>alert(1)</script>'), { 'content-type': 'text/html' });
  const page = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file' });
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  assert.match(String(page.headers['content-security-policy']), /sandbox/);
  assert.equal(page.headers['content-disposition'], 'attachment');
  const etag = String(page.headers['etag']);
  const stale = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { range: 'bytes=2-', 'if-range': '"deadbeef"' } });
  assert.equal(stale.statusCode, 200, 'a replaced binary is sent whole');
  const same = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { range: 'bytes=2-', 'if-range': etag } });
  assert.equal(same.statusCode, 206);
  const weak = await t.request({ method: 'GET', url: '/api/v1/binaries/files/a?property=file', headers: { 'if-none-match': `W/${etag}` } });
  assert.equal(weak.statusCode, 304);
});

test('an upload whose precondition fails is refused before any byte is stored', async () => {
  const blobsBefore = storedBlobs();
  const refused = await upload('/files/a', Buffer.from('never stored'), { 'if-match': '"nope"' });
  assert.equal(refused.statusCode, 412);
  assert.deepEqual(storedBlobs(), blobsBefore);
});
