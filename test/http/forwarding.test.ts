import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';

import type { Principal } from '../../src/auth/authenticator.js';
import type { NodeDescriptor } from '../../src/core/clusterState.js';
import { ConclaveError, isConclaveError } from '../../src/errors/catalogue.js';
import { registerErrorHandling } from '../../src/http/errors.js';
import { decodeIdentity } from '../../src/auth/forwardedIdentity.js';
import { identityHeader, InternalAuth, internalAuthHeader } from '../../src/auth/internalAuth.js';
import { RequestRelay, type ForwardingOptions, type MasterView } from '../../src/forwarding/requestRelay.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * The forwarder between real sockets: a front node (Fastify with the coordinator hook) and a stand-in master (a
 * plain HTTP server that answers, breaks or stalls as each case needs). What crosses, what does not, and which
 * error each failure becomes.
 */

const defaults: ForwardingOptions = {
  mode: 'CUD',
  connectionsMax: 4,
  requestsMax: 16,
  connectTimeoutMs: 2000,
  responseTimeoutMs: 5000,
  bodyIdleTimeoutMs: 5000,
  commandBodyBytesMax: 16 * 1024,
};

function masterAt(port: number | null): NodeDescriptor {
  return {
    id: 'master-id',
    name: 'm1',
    address: '127.0.0.1:1',
    ...(port === null ? {} : { httpAddress: `127.0.0.1:${port}` }),
    roles: { masterEligible: true, votingOnly: false },
    version: '0.1.0',
  };
}

function viewOf(master: NodeDescriptor | null): MasterView {
  return {
    softState: () => ({ master: master?.id ?? null }),
    clusterState: () => ({ nodes: master === null ? [] : [master] }),
    self: () => ({ id: 'replica-id', name: 'r1' }),
    persistFailing: false,
  };
}

interface Front {
  url: string;
  forwarder: RequestRelay;
  app: FastifyInstance;
}

const secret = 'forwarding-test-cluster-secret';
/** The master's verifier (the stand-in masters check the signature with it when a case needs it). */
const masterAuth = new InternalAuth(secret, 'master-id', 1000);

/** The stand-in for the users table and token check: two clients the front knows, and wrong credentials. */
async function identify(authorization: string | undefined): Promise<Principal | undefined> {
  if (authorization === undefined) return undefined;
  if (authorization === 'Bearer the-client-token') return { name: 'alice', roles: ['editor'] };
  if (authorization === 'Basic x') return { name: 'bob', roles: ['editor'] };
  throw new ConclaveError('AUTH_INVALID', 'The user name or password is wrong.');
}

async function front(view: MasterView, options: Partial<ForwardingOptions> = {}): Promise<Front> {
  const app = Fastify();
  registerErrorHandling(app);
  const replicaAuth = new InternalAuth(secret, 'replica-id', 1000);
  const forwarder = new RequestRelay(view, { ...defaults, ...options }, { sign: (r) => replicaAuth.sign(r), tls: null, publicScheme: 'http' });
  app.addHook('onRequest', async (request, reply) => {
    if (await forwarder.coordinate(request, reply, () => identify(request.headers.authorization))) return reply;
  });
  app.addHook('onClose', async () => forwarder.close());
  app.all('/api/v1/*', async () => ({ servedBy: 'front' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, forwarder, app };
}

async function fakeMaster(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A raw HTTP/1.1 request (node:http lets a test send headers that fetch refuses, such as Connection tokens). */
function send(url: string, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

test('a forwarded write keeps its method, path, query, body and end-to-end headers; hop-by-hop headers and the client\'s credentials stay behind', async () => {
  let seen: { method?: string; url?: string; headers: IncomingHttpHeaders; body: string } | undefined;
  const master = await fakeMaster(async (req, res) => {
    seen = { method: req.method, url: req.url, headers: req.headers, body: await readBody(req) };
    res.writeHead(201, { 'content-type': 'application/json', 'x-conclave-index': '42', 'x-master-only': 'yes', 'x-hop-back': 'no', connection: 'x-hop-back' });
    res.end('{"created":true}');
  });
  const node = await front(viewOf(masterAt(master.port)));
  try {
    const answer = await send(
      `${node.url}/api/v1/content/a%20b?x=1&y=2`,
      'PUT',
      {
        authorization: 'Bearer the-client-token',
        cookie: 'session=1',
        // A client trying to smuggle a node-to-node identity or signature through: dropped.
        [identityHeader]: 'eyJ1c2VyIjoiYWRtaW4iLCJyb2xlcyI6WyJhZG1pbiJdfQ',
        [internalAuthHeader]: 'v2.forged',
        'content-type': 'application/json',
        'x-conclave-min-index': '7',
        connection: 'keep-alive, x-hop',
        'x-hop': 'secret',
      },
      '{"properties":{"v":1}}',
    );
    assert.equal(answer.status, 201);
    assert.equal(answer.body, '{"created":true}');
    assert.equal(answer.headers['x-conclave-forwarded-from'], 'r1');
    assert.equal(answer.headers['x-conclave-index'], '42');
    assert.equal(answer.headers['x-master-only'], 'yes');
    assert.equal(answer.headers['x-hop-back'], undefined, 'a header the master named in Connection stays behind');

    assert.ok(seen !== undefined);
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.url, '/api/v1/content/a%20b?x=1&y=2');
    assert.equal(seen.body, '{"properties":{"v":1}}');
    // No credentials reach the master: the identity the front authenticated does, signed for the master.
    assert.equal(seen.headers['authorization'], undefined);
    assert.equal(seen.headers['cookie'], undefined);
    const identity = seen.headers[identityHeader] as string;
    assert.deepEqual(decodeIdentity(identity), { user: 'alice', roles: ['editor'] });
    const signature = seen.headers[internalAuthHeader] as string;
    const received = { method: 'PUT', path: seen.url, hasBody: true, identity };
    assert.equal(masterAuth.verify(signature, received), 'replica-id');
    // Captured and replayed: refused by the master, and by any other node.
    assert.throws(() => masterAuth.verify(signature, received), (err) => isConclaveError(err) && /replay/.test(err.message));
    assert.throws(() => new InternalAuth(secret, 'other-id', 10).verify(signature, received), (err) => isConclaveError(err) && /another node/.test(err.message));
    // The identity cannot be swapped for another under the same signature.
    const admin = Buffer.from(JSON.stringify({ user: 'admin', roles: ['admin'] })).toString('base64url');
    assert.throws(() => new InternalAuth(secret, 'master-id', 10).verify(signature, { ...received, identity: admin }), (err) => isConclaveError(err) && err.code === 'INTERNAL_AUTH_FAILED');
    assert.equal(seen.headers['x-conclave-min-index'], '7');
    assert.equal(seen.headers['x-conclave-forwarded-from'], 'r1');
    assert.equal(seen.headers['host'], `127.0.0.1:${master.port}`);
    assert.equal(seen.headers['x-hop'], undefined, 'a header the client named in Connection stays behind');

    // A read in CUD mode does not reach the master.
    const read = await send(`${node.url}/api/v1/content/a`, 'GET', {});
    assert.equal(JSON.parse(read.body).servedBy, 'front');
    assert.equal(read.headers['x-conclave-forwarded-from'], undefined);
    await waitFor('the forward to be released', () => (node.forwarder.requestsInFlight === 0 ? true : undefined));
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('a forward with wrong credentials is refused by the node the client chose; the master sees nothing', async () => {
  let reached = 0;
  const master = await fakeMaster((req, res) => {
    reached++;
    req.resume();
    res.writeHead(200).end('{}');
  });
  const node = await front(viewOf(masterAt(master.port)));
  try {
    const answer = await send(`${node.url}/api/v1/content/a`, 'DELETE', { authorization: 'Basic wrong' });
    assert.equal(answer.status, 401, answer.body);
    assert.equal(JSON.parse(answer.body).error.code, 'AUTH_INVALID');
    // Without credentials the forward goes, with no identity: the master decides (anonymous read, or AUTH_REQUIRED).
    await send(`${node.url}/api/v1/content/a`, 'DELETE', {});
    assert.equal(reached, 1);
    assert.equal(node.forwarder.requestsInFlight, 0);
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('a refusal from a master that stepped down (421) passes through as it is', async () => {
  const refusal = '{"error":{"code":"NOT_MASTER","message":"This node is not the master; send writes to m2.","retryable":true,"master":"m2"}}';
  let forwardedFrom: string | string[] | undefined;
  const master = await fakeMaster((req, res) => {
    forwardedFrom = req.headers['x-conclave-forwarded-from'];
    req.resume();
    res.writeHead(421, { 'content-type': 'application/json; charset=utf-8' }).end(refusal);
  });
  const node = await front(viewOf(masterAt(master.port)));
  try {
    const answer = await send(`${node.url}/api/v1/content/a`, 'DELETE', { authorization: 'Basic x' });
    assert.equal(answer.status, 421);
    assert.equal(answer.body, refusal);
    assert.equal(answer.headers['x-conclave-forwarded-from'], 'r1');
    assert.equal(forwardedFrom, 'r1', 'the master sees that the request was forwarded, so it never forwards it again');
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('a master nobody listens for: 503 MASTER_UNREACHABLE naming the master tried; nothing was sent', async () => {
  const port = await freePort();
  const node = await front(viewOf(masterAt(port)), { mode: 'ALL' });
  try {
    for (const method of ['PUT', 'GET']) {
      const answer = await send(`${node.url}/api/v1/content/a`, method, { 'content-type': 'application/json' }, method === 'PUT' ? '{}' : undefined);
      assert.equal(answer.status, 503, answer.body);
      const error = JSON.parse(answer.body).error;
      assert.equal(error.code, 'MASTER_UNREACHABLE');
      assert.equal(error.retryable, true);
      assert.equal(error.master, 'm1');
      assert.equal(error.masterHttpAddress, `127.0.0.1:${port}`);
      assert.equal(error.cause, 'ECONNREFUSED');
      assert.match(error.message, /nothing was sent/);
    }
  } finally {
    await node.app.close();
  }
});

test('a connection that breaks after the write was sent: 504 WRITE_OUTCOME_UNKNOWN; a read: 503 MASTER_UNREACHABLE', async () => {
  const master = await fakeMaster(async (req) => {
    await readBody(req);
    req.socket.destroy();
  });
  const node = await front(viewOf(masterAt(master.port)), { mode: 'ALL' });
  try {
    const write = await send(`${node.url}/api/v1/content/a`, 'PUT', { 'content-type': 'application/json' }, '{"properties":{}}');
    assert.equal(write.status, 504, write.body);
    const error = JSON.parse(write.body).error;
    assert.equal(error.code, 'WRITE_OUTCOME_UNKNOWN');
    assert.equal(error.master, 'm1');
    assert.match(error.message, /may have been applied/);

    const read = await send(`${node.url}/api/v1/content/a`, 'GET', {});
    assert.equal(read.status, 503, read.body);
    assert.equal(JSON.parse(read.body).error.code, 'MASTER_UNREACHABLE');
    await waitFor('the forwards to be released', () => (node.forwarder.requestsInFlight === 0 ? true : undefined));
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('a master that does not answer within the response timeout: 504 WRITE_OUTCOME_UNKNOWN', async () => {
  const held: ServerResponse[] = [];
  const master = await fakeMaster((req, res) => {
    req.resume();
    held.push(res);
  });
  const node = await front(viewOf(masterAt(master.port)), { responseTimeoutMs: 300 });
  try {
    const write = await send(`${node.url}/api/v1/content/a`, 'PATCH', { 'content-type': 'application/json' }, '{}');
    assert.equal(write.status, 504, write.body);
    const error = JSON.parse(write.body).error;
    assert.equal(error.code, 'WRITE_OUTCOME_UNKNOWN');
    assert.equal(error.cause, 'UND_ERR_HEADERS_TIMEOUT');
    assert.match(error.message, /did not answer within 300 ms/);
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('a forward waits while the node merely loses sight of its master, and is given up once another node is master', async () => {
  const held: ServerResponse[] = [];
  const master = await fakeMaster((req, res) => {
    req.resume();
    held.push(res);
  });
  const listeners: Array<() => void> = [];
  let known: string | null = 'master-id';
  const other: NodeDescriptor = { ...masterAt(null), id: 'other-id', name: 'm2' };
  const view: MasterView = {
    ...viewOf(masterAt(master.port)),
    softState: () => ({ master: known }),
    clusterState: () => ({ nodes: [masterAt(master.port), other] }),
    onChange: (listener) => {
      listeners.push(listener);
      return () => undefined;
    },
  };
  const node = await front(view);
  try {
    const write = send(`${node.url}/api/v1/content/a`, 'PATCH', { 'content-type': 'application/json' }, '{}');
    await waitFor('the forward to reach the master', () => (held.length === 1 ? true : undefined));
    // No master known for a moment (an election under way): the forward stays, and the master's answer gets through.
    known = null;
    for (const listener of listeners) listener();
    known = 'master-id';
    for (const listener of listeners) listener();
    held[0]!.writeHead(200, { 'content-type': 'application/json' }).end('{"servedBy":"master"}');
    const answered = await write;
    assert.equal(answered.status, 200, answered.body);
    assert.equal(JSON.parse(answered.body).servedBy, 'master');

    // Another node became master: a forward still waiting on the old one is given up at once.
    const second = send(`${node.url}/api/v1/content/b`, 'PATCH', { 'content-type': 'application/json' }, '{}');
    await waitFor('the second forward to reach the master', () => (held.length === 2 ? true : undefined));
    known = 'other-id';
    for (const listener of listeners) listener();
    const givenUp = await second;
    assert.equal(givenUp.status, 504, givenUp.body);
    assert.match(JSON.parse(givenUp.body).error.message, /another node became master meanwhile/);
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('forwards in flight are bounded: beyond http.forwardRequestsMax, OVERLOADED; a finished forward frees its place', async () => {
  const held: ServerResponse[] = [];
  const master = await fakeMaster((req, res) => {
    req.resume();
    held.push(res);
  });
  const node = await front(viewOf(masterAt(master.port)), { requestsMax: 1 });
  try {
    const first = send(`${node.url}/api/v1/content/a`, 'DELETE', {});
    await waitFor('the first forward to reach the master', () => (held.length === 1 ? true : undefined));
    const second = await send(`${node.url}/api/v1/content/b`, 'DELETE', {});
    assert.equal(second.status, 503, second.body);
    assert.equal(JSON.parse(second.body).error.code, 'OVERLOADED');
    held[0]!.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    assert.equal((await first).status, 200);
    await waitFor('the forward to be released', () => (node.forwarder.requestsInFlight === 0 ? true : undefined));
    const third = send(`${node.url}/api/v1/content/c`, 'DELETE', {});
    await waitFor('the third forward to reach the master', () => (held.length === 2 ? true : undefined));
    held[1]!.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    assert.equal((await third).status, 200);
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('without a master a write is refused with CLUSTER_NO_MASTER; a master without a dialable address gives MASTER_UNREACHABLE', async () => {
  const none = await front(viewOf(null));
  const unknown = await front(viewOf(masterAt(null)));
  try {
    const refused = await send(`${none.url}/api/v1/content/a`, 'PUT', { 'content-type': 'application/json' }, '{}');
    assert.equal(refused.status, 503);
    assert.equal(JSON.parse(refused.body).error.code, 'CLUSTER_NO_MASTER');
    const read = await send(`${none.url}/api/v1/content/a`, 'GET', {});
    assert.equal(JSON.parse(read.body).servedBy, 'front');

    const noAddress = await send(`${unknown.url}/api/v1/content/a`, 'PUT', { 'content-type': 'application/json' }, '{}');
    assert.equal(noAddress.status, 503);
    const error = JSON.parse(noAddress.body).error;
    assert.equal(error.code, 'MASTER_UNREACHABLE');
    assert.equal(error.master, 'm1');
  } finally {
    await none.app.close();
    await unknown.app.close();
  }
});

test('ALL: HEAD and 304 answers keep their headers and carry no body', async () => {
  const master = await fakeMaster((req, res) => {
    req.resume();
    if (req.headers['if-none-match'] !== undefined) res.writeHead(304, { etag: '"abc"' }).end();
    else res.writeHead(200, { 'content-length': '1234', etag: '"abc"', 'content-type': 'image/png' }).end();
  });
  const node = await front(viewOf(masterAt(master.port)), { mode: 'ALL' });
  try {
    const head = await send(`${node.url}/api/v1/binaries/a?property=file`, 'HEAD', {});
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '1234');
    assert.equal(head.headers['content-type'], 'image/png');
    assert.equal(head.headers['x-conclave-forwarded-from'], 'r1');
    const notModified = await send(`${node.url}/api/v1/content/a`, 'GET', { 'if-none-match': '"abc"' });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers['etag'], '"abc"');
    assert.equal(notModified.body, '');
    await waitFor('the forwards to be released', () => (node.forwarder.requestsInFlight === 0 ? true : undefined));
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});

test('a client that goes away in the middle of its upload: the master sees the upload cut short, never a whole body', async () => {
  const outcomes: string[] = [];
  let received = 0;
  const master = await fakeMaster((req, res) => {
    req.on('data', (chunk: Buffer) => (received += chunk.length));
    req.on('end', () => {
      outcomes.push('whole body');
      res.end('{}');
    });
    req.on('error', () => outcomes.push('cut short'));
    req.on('close', () => {
      if (!req.complete) outcomes.push('cut short');
    });
  });
  const node = await front(viewOf(masterAt(master.port)));
  try {
    const client = httpRequest(`${node.url}/api/v1/binaries/a?property=file`, { method: 'PUT', headers: { 'content-length': '1000000' } });
    client.on('error', () => undefined);
    client.write(Buffer.alloc(1000));
    await waitFor('the first bytes to reach the master', () => (received >= 1000 ? true : undefined));
    client.destroy();
    await waitFor('the master to see the end of the upload', () => (outcomes.length > 0 ? true : undefined));
    assert.equal(outcomes[0], 'cut short');
    await waitFor('the forward to be released', () => (node.forwarder.requestsInFlight === 0 ? true : undefined));
  } finally {
    await node.app.close();
    await closeServer(master.server);
  }
});
