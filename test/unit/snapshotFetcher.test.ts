import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';

import { emptyClusterState } from '../../src/core/clusterState.js';
import type { SnapshotRequest } from '../../src/core/types.js';
import { InternalAuth, internalAuthHeader } from '../../src/auth/internalAuth.js';
import { InternalHttpClient } from '../../src/replication/internalHttp.js';
import { SnapshotFetcher } from '../../src/replication/snapshotFetcher.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

// The snapshot download against a real HTTP server on a socket that misbehaves on purpose: a connection cut
// mid-body, corrupt bytes, a refusal, a newer snapshot arriving mid-download.

const secret = 'fetcher-test-cluster-secret';
const holderAuth = new InternalAuth(secret, 'holder', 10_000);

interface Served {
  readonly method: string;
  readonly url: string;
  readonly range: string | undefined;
  readonly ifRange: string | undefined;
  readonly caller: string;
}

/** A holder serving files by snapshot index; `behave` may answer a request itself (return true when it did). */
async function holder(files: Map<number, Buffer>, behave: (request: Served, file: Buffer, response: ServerResponse, count: number) => boolean) {
  const served: Served[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const caller = holderAuth.verify(req.headers[internalAuthHeader] as string | undefined, { method: req.method!, path: req.url!, hasBody: false, identity: undefined });
    const request: Served = { method: req.method!, url: req.url!, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, caller };
    served.push(request);
    const index = Number(/\/internal\/v1\/snapshots\/(\d+)$/.exec(req.url!)?.[1]);
    const file = files.get(index);
    if (file === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'SNAPSHOT_NOT_FOUND' } }));
      return;
    }
    if (behave(request, file, res, served.length)) return;
    const etag = `"${createHash('sha256').update(file).digest('hex')}"`;
    const start = request.range !== undefined && request.ifRange === etag ? Number(/^bytes=(\d+)-$/.exec(request.range)![1]) : 0;
    const headers: Record<string, string | number> = { etag, 'content-length': file.length - start };
    if (start > 0) headers['content-range'] = `bytes ${start}-${file.length - 1}/${file.length}`;
    res.writeHead(start > 0 ? 206 : 200, headers).end(file.subarray(start));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { served, address, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

function message(index: number, term: number, file: Buffer): SnapshotRequest {
  const sha256 = createHash('sha256').update(file).digest('hex');
  return {
    type: 'snapshotRequest',
    from: 'holder',
    to: 'me',
    term,
    snapshot: {
      index,
      term,
      configuration: { kind: 'configuration', current: ['holder'] },
      data: { clusterState: emptyClusterState, stateMachine: { index, term, bytes: file.length, sha256, holder: 'holder' } },
    },
  };
}

function fetcherFor(dir: string, address: string) {
  const verified: SnapshotRequest[] = [];
  const incomingDir = join(dir, 'incoming');
  mkdirSync(incomingDir, { recursive: true });
  const fetcher = new SnapshotFetcher(
    {
      incomingDir,
      selfId: 'me',
      http: new InternalHttpClient({ auth: new InternalAuth(secret, 'me', 10_000), tls: null, connectionsPerPeerMax: 4, idleTimeoutMs: 5000 }),
      peerOf: () => ({ id: 'holder', name: 'holder', address: '127.0.0.1:1', httpAddress: address, roles: { masterEligible: true, votingOnly: false }, version: '0.1.0' }),
      transferTimeoutMs: 2000,
      onVerified: (m) => verified.push(m),
      log: pino({ level: 'silent' }),
    },
    0,
  );
  return { fetcher, verified, incomingDir };
}

test('a download cut mid-body resumes from the bytes on disk with a Range request, and is verified', async () => {
  const tmp = tempDir();
  const file = randomBytes(300_000);
  const server = await holder(new Map([[7, file]]), (request, body, res, count) => {
    if (count !== 1) return false;
    // The first answer promises everything, sends a third, and the connection dies.
    res.writeHead(200, { etag: `"${createHash('sha256').update(body).digest('hex')}"`, 'content-length': body.length });
    res.write(body.subarray(0, 100_000), () => setTimeout(() => res.socket?.destroy(), 50));
    return true;
  });
  const { fetcher, verified, incomingDir } = fetcherFor(tmp.dir, server.address);
  try {
    const m = message(7, 3, file);
    fetcher.offer(m);
    await waitFor('the download to be verified', () => (verified.length > 0 ? true : undefined));
    assert.equal(server.served.length, 2);
    assert.equal(server.served[0]!.range, undefined);
    assert.equal(server.served[0]!.caller, 'me', 'requests are signed as this node');
    const resumed = server.served[1]!;
    const from = Number(/^bytes=(\d+)-$/.exec(resumed.range ?? '')?.[1]);
    assert.ok(from > 0 && from <= 100_000, `resumed from byte ${resumed.range}: ${JSON.stringify(server.served)}`);
    assert.equal(resumed.ifRange, `"${createHash('sha256').update(file).digest('hex')}"`, 'only the same file is resumed');
    assert.deepEqual(verified, [m]);
    const path = fetcher.verifiedFile(m.snapshot.data === null ? (undefined as never) : (m.snapshot.data as { stateMachine: never }).stateMachine);
    assert.ok(path !== undefined);
    assert.deepEqual(readFileSync(path), file);
    assert.equal(fetcher.progress()?.state, 'verified');
    assert.equal(fetcher.progress()?.percent, 100);
    assert.deepEqual(readdirSync(incomingDir), [`7-${createHash('sha256').update(file).digest('hex')}.db`]);
  } finally {
    fetcher.close();
    await server.close();
    tmp.cleanup();
  }
});

test('a download that fails its checksum is deleted and fetched again from the start', async () => {
  const tmp = tempDir();
  const file = randomBytes(50_000);
  const corrupt = Buffer.from(file);
  corrupt[20_000] = corrupt[20_000]! ^ 0xff;
  const server = await holder(new Map([[9, file]]), (_request, body, res, count) => {
    if (count !== 1) return false;
    res.writeHead(200, { etag: `"${createHash('sha256').update(body).digest('hex')}"`, 'content-length': corrupt.length }).end(corrupt);
    return true;
  });
  const { fetcher, verified } = fetcherFor(tmp.dir, server.address);
  try {
    const m = message(9, 2, file);
    fetcher.offer(m);
    await waitFor('the download to be verified', () => (verified.length > 0 ? true : undefined));
    assert.equal(server.served.length, 2);
    assert.equal(server.served[1]!.range, undefined, 'fetched again from byte 0');
    assert.deepEqual(readFileSync(fetcher.verifiedFile((m.snapshot.data as { stateMachine: never }).stateMachine)!), file);
  } finally {
    fetcher.close();
    await server.close();
    tmp.cleanup();
  }
});

test('a holder without the snapshot ends the download until the master sends one again; a newer snapshot replaces one under way', async () => {
  const tmp = tempDir();
  const old = randomBytes(400_000);
  const newer = randomBytes(10_000);
  const files = new Map<number, Buffer>([[5, old]]);
  let hold: ServerResponse | null = null;
  const server = await holder(files, (request, body, res) => {
    if (!request.url.endsWith('/5')) return false;
    // Snapshot 5 trickles: its download is still under way when the next message comes.
    res.writeHead(200, { etag: `"${createHash('sha256').update(body).digest('hex')}"`, 'content-length': body.length });
    res.write(body.subarray(0, 1000));
    hold = res;
    return true;
  });
  const { fetcher, verified, incomingDir } = fetcherFor(tmp.dir, server.address);
  try {
    // Refused: nothing is retried, nothing stays on disk.
    fetcher.offer(message(3, 1, randomBytes(10)));
    await waitFor('the refusal', () => (fetcher.progress()?.state === 'abandoned' ? true : undefined));
    assert.equal(server.served.length, 1);
    assert.deepEqual(readdirSync(incomingDir), []);

    const first = message(5, 1, old);
    fetcher.offer(first);
    await waitFor('the download to start', () => ((fetcher.progress()?.bytes ?? 0) >= 1000 ? true : undefined));
    assert.equal(fetcher.progress()?.index, 5);
    assert.equal(fetcher.progress()?.totalBytes, old.length);
    // The master repeats itself while it waits: the same snapshot is not fetched twice.
    fetcher.offer({ ...first, term: 2 });
    assert.equal(server.served.length, 2);
    // A newer snapshot replaces it.
    files.set(6, newer);
    fetcher.offer(message(6, 2, newer));
    await waitFor('the newer snapshot', () => (verified.length > 0 ? true : undefined));
    assert.equal(verified[0]!.snapshot.index, 6);
    assert.equal(server.served.length, 3);
    assert.ok(!existsSync(join(incomingDir, `5-${createHash('sha256').update(old).digest('hex')}.part`)), 'the replaced download is gone');
    assert.equal(verified.length, 1);
  } finally {
    (hold as ServerResponse | null)?.destroy();
    fetcher.close();
    await server.close();
    tmp.cleanup();
  }
});
