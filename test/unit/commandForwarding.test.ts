import '../../src/node/linearRegExp.js';

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pino from 'pino';

import type { Command } from '../../src/content/commands.js';
import type { User } from '../../src/content/model.js';
import { ConclaveError, isConclaveError } from '../../src/errors/catalogue.js';
import type { Committed } from '../../src/node/clusterRuntime.js';
import { CommandClient } from '../../src/forwarding/commandClient.js';
import { CommandServer } from '../../src/forwarding/commandServer.js';
import { ForwardedRefusal } from '../../src/forwarding/refusals.js';
import { checkForwardedCommand, type CommandOutcome, type CommandRequest, type ForwardableCommand } from '../../src/forwarding/wire.js';

const silent = pino({ level: 'silent' });
const put: ForwardableCommand = { type: 'put', path: '/a', newId: 'id-1', nodeType: 'node', properties: { x: 1 }, time: '2026-01-01T00:00:00.000Z', user: 'admin' };
const byAdmin = { user: 'admin', needs: 'write' } as const;

/** A replica whose master is m1, with a link that records what it sends. */
function replica(options: { commandsMax?: number; answerTimeoutMs?: number; linkUp?: boolean } = {}) {
  const listeners = new Set<() => void>();
  const state = { master: 'm1' as string | null };
  const sent: CommandRequest[] = [];
  const view = {
    softState: () => ({ master: state.master }),
    clusterState: () => ({ nodes: [{ id: 'm1', name: 'one', httpAddress: '127.0.0.1:1' }, { id: 'm2', name: 'two' }, { id: 'r', name: 'replica' }] }),
    self: () => ({ id: 'r' }),
    onChange: (listener: () => void) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  const forwarder = new CommandClient(
    view,
    { send: (_to, message) => (options.linkUp === false ? false : (sent.push(message), true)) },
    { commandsMax: options.commandsMax ?? 8, answerTimeoutMs: options.answerTimeoutMs ?? 60_000 },
  );
  const elect = (master: string | null) => {
    state.master = master;
    for (const listener of listeners) listener();
  };
  return { forwarder, sent, elect };
}

async function refusalOf(promise: Promise<unknown>): Promise<ConclaveError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isConclaveError(err), String(err));
    return err;
  }
  assert.fail('expected a refusal');
}

describe('the command forwarder (replica side)', () => {
  test('a forwarded command carries the identity the replica authenticated, never credentials', async () => {
    const { forwarder, sent } = replica();
    const pending = forwarder.forward(put, byAdmin);
    assert.deepEqual(Object.keys(sent[0]!).sort(), ['authority', 'command', 'id', 'type']);
    assert.deepEqual(sent[0]!.authority, byAdmin);
    assert.deepEqual(Object.keys(sent[0]!.authority).sort(), ['needs', 'user']);
    forwarder.receive('m1', { type: 'commandOutcome', id: sent[0]!.id, appliedIndex: 1, ok: false, error: { code: 'NOT_MASTER', message: 'x', details: {} } });
    await pending.catch(() => undefined);
  });

  test('an outcome from the master resolves the command it answers, and only from the node it was sent to', async () => {
    const { forwarder, sent } = replica();
    const pending = forwarder.forward(put, byAdmin);
    assert.equal(sent.length, 1);
    const id = sent[0]!.id;
    const result = { node: undefined, created: true };
    assert.equal(forwarder.receive('m2', { type: 'commandOutcome', id, appliedIndex: 9, ok: true, index: 9, result }), 'an answer from a node the command was not sent to');
    assert.equal(forwarder.receive('m1', { type: 'commandOutcome', id, appliedIndex: 9, ok: true, index: 'nine', result }), 'a malformed result');
    assert.equal(forwarder.commandsInFlight, 1);
    assert.equal(forwarder.receive('m1', { type: 'commandOutcome', id, appliedIndex: 9, ok: true, index: 9, result }), null);
    assert.deepEqual(await pending, { index: 9, result });
    assert.equal(forwarder.commandsInFlight, 0);
    // A late duplicate (or an answer to a request of a former process) is ignored.
    assert.equal(forwarder.receive('m1', { type: 'commandOutcome', id, appliedIndex: 9, ok: true, index: 9, result }), null);
  });

  test('correlation ids differ between forwarders, so a restarted node never takes an answer meant for its former self', () => {
    const a = replica();
    const b = replica();
    void a.forwarder.forward(put, byAdmin).catch(() => undefined);
    void b.forwarder.forward(put, byAdmin).catch(() => undefined);
    assert.notEqual(a.sent[0]!.id, b.sent[0]!.id);
    a.elect('m2');
    b.elect('m2');
  });

  test('the master\'s refusal is rethrown with its code, details and the master\'s applied index', async () => {
    const { forwarder, sent } = replica();
    const pending = forwarder.forward(put, byAdmin);
    forwarder.receive('m1', {
      type: 'commandOutcome',
      id: sent[0]!.id,
      appliedIndex: 41,
      ok: false,
      error: { code: 'PRECONDITION_FAILED', message: 'If-Match did not hold.', details: { path: '/a' } },
    });
    const err = await refusalOf(pending);
    assert.ok(err instanceof ForwardedRefusal);
    assert.equal(err.code, 'PRECONDITION_FAILED');
    assert.equal(err.status, 412);
    assert.equal(err.message, 'If-Match did not hold.');
    assert.deepEqual(err.details, { path: '/a' });
    assert.equal(err.masterAppliedIndex, 41);
  });

  test('an error code this node does not know becomes INTERNAL', async () => {
    const { forwarder, sent } = replica();
    const pending = forwarder.forward(put, byAdmin);
    forwarder.receive('m1', { type: 'commandOutcome', id: sent[0]!.id, appliedIndex: 1, ok: false, error: { code: 'FROM_THE_FUTURE', message: 'new', details: {} } });
    assert.equal((await refusalOf(pending)).code, 'INTERNAL');
  });

  test('beyond commandsMax in flight a command is refused with OVERLOADED and nothing is sent', async () => {
    const { forwarder, sent, elect } = replica({ commandsMax: 2 });
    const first = forwarder.forward(put, byAdmin).catch((err: unknown) => err);
    const second = forwarder.forward(put, byAdmin).catch((err: unknown) => err);
    const third = await refusalOf(forwarder.forward(put, byAdmin));
    assert.equal(third.code, 'OVERLOADED');
    assert.equal(third.details['forwardCommandsMax'], 2);
    assert.equal(sent.length, 2);
    elect('m2');
    await Promise.all([first, second]);
  });

  test('no answer within the timeout: WRITE_OUTCOME_UNKNOWN, and the slot is free again', async () => {
    const { forwarder } = replica({ answerTimeoutMs: 5, commandsMax: 1 });
    const err = await refusalOf(forwarder.forward(put, byAdmin));
    assert.equal(err.code, 'WRITE_OUTCOME_UNKNOWN');
    assert.equal(err.details['master'], 'one');
    assert.equal(err.details['masterHttpAddress'], '127.0.0.1:1');
    assert.equal(forwarder.commandsInFlight, 0);
  });

  test('the connection to the master drops after sending: WRITE_OUTCOME_UNKNOWN; another peer going down changes nothing', async () => {
    const { forwarder } = replica();
    const pending = forwarder.forward(put, byAdmin);
    forwarder.peerDown('m2');
    assert.equal(forwarder.commandsInFlight, 1);
    forwarder.peerDown('m1');
    const err = await refusalOf(pending);
    assert.equal(err.code, 'WRITE_OUTCOME_UNKNOWN');
    assert.equal(err.details['cause'], 'connection lost');
  });

  test('another node becoming master abandons the command; losing sight of the master does not', async () => {
    const { forwarder, elect } = replica();
    const pending = forwarder.forward(put, byAdmin);
    elect(null);
    assert.equal(forwarder.commandsInFlight, 1, 'an election may confirm the same master');
    elect('m1');
    assert.equal(forwarder.commandsInFlight, 1);
    elect('m2');
    const err = await refusalOf(pending);
    assert.equal(err.code, 'WRITE_OUTCOME_UNKNOWN');
    assert.equal(err.details['cause'], 'master changed');
  });

  test('nothing sent: MASTER_UNREACHABLE without a connection, CLUSTER_NO_MASTER without a master', async () => {
    const down = replica({ linkUp: false });
    const unreachable = await refusalOf(down.forwarder.forward(put, byAdmin));
    assert.equal(unreachable.code, 'MASTER_UNREACHABLE');
    assert.equal(unreachable.details['master'], 'one');
    assert.equal(down.forwarder.commandsInFlight, 0);
    const none = replica();
    none.elect(null);
    assert.equal((await refusalOf(none.forwarder.forward(put, byAdmin))).code, 'CLUSTER_NO_MASTER');
    assert.equal(none.sent.length, 0);
  });
});

describe('the check of a forwarded command (master side)', () => {
  const check = (command: unknown, authority: unknown = byAdmin) => {
    try {
      checkForwardedCommand(command, authority);
      return 'ok';
    } catch (err) {
      return (err as ConclaveError).code;
    }
  };

  test('the kinds a client may send pass; bootstrap and setBinary never do', () => {
    assert.equal(check(put), 'ok');
    assert.equal(check({ type: 'patch', path: '/a', patch: { x: null }, ifMatch: ['"a:1"'], time: put.time, user: 'admin' }), 'ok');
    assert.equal(check({ type: 'delete', path: '/a', recursive: true, time: put.time, user: 'admin' }), 'ok');
    assert.equal(check({ type: 'move', from: '/a', to: '/b', before: null, time: put.time, user: 'admin' }), 'ok');
    assert.equal(check({ type: 'reorder', path: '/', order: ['a', 'b'], time: put.time, user: 'admin' }), 'ok');
    // Without a type, a replace keeps the node's type (apply() decides).
    const { nodeType: _typed, ...untyped } = put;
    assert.equal(check(untyped), 'ok');
    assert.equal(check({ type: 'deleteBinary', path: '/a', property: 'file', time: put.time, user: 'admin' }), 'ok');
    assert.equal(check({ type: 'putUser', name: 'bob', roles: ['editor'], createOnly: false, time: put.time }, { user: 'admin', needs: 'admin' }), 'ok');
    assert.equal(check({ type: 'deleteUser', name: 'bob', time: put.time }, { user: 'admin', needs: 'admin' }), 'ok');
    assert.equal(check({ type: 'restore', id: 'node-id', version: 3, path: '/a', ifMatch: ['"node-id:4"'], time: put.time, user: 'admin' }), 'ok');
    assert.equal(check({ type: 'bootstrap', rootId: 'r', time: put.time, tokenKey: 'k', adminPasswordHash: 'h' }, { user: 'admin', needs: 'admin' }), 'INTERNAL');
    // History's upkeep is the master's own: never forwarded.
    assert.equal(check({ type: 'startHistory', versionsPerNodeMax: 5, time: put.time }, { user: 'admin', needs: 'admin' }), 'INTERNAL');
    assert.equal(check({ type: 'pruneVersions', versionsPerNodeMax: 5, supersededBefore: put.time, versionsMax: 9, time: put.time }, { user: 'admin', needs: 'admin' }), 'INTERNAL');
    const binary = { type: 'setBinary', path: '/a', property: 'f', binary: { sha256: 'a'.repeat(64), size: 1, contentType: 'x' }, time: put.time, user: 'admin' };
    assert.equal(check(binary), 'INTERNAL');
  });

  test('schema commands: an admin\'s with the fields the routes build pass, the definition as stored; anything else is refused', () => {
    const asAdmin = { user: 'admin', needs: 'admin' };
    const putSchema = { type: 'putSchema', typeName: 'article', definition: { childTypes: ['b', 'a'] }, ifMatch: ['"article:1"'], time: put.time, user: 'admin' };
    assert.equal(check(putSchema, asAdmin), 'ok');
    const checked = checkForwardedCommand(putSchema, asAdmin).command as unknown as { definition: unknown };
    assert.deepEqual(checked.definition, { properties: {}, additionalProperties: true, childTypes: ['a', 'b'] }, 'the master proposes the parsed form');
    assert.equal(check({ type: 'deleteSchema', typeName: 'article', time: put.time, user: 'admin' }, asAdmin), 'ok');
    assert.equal(check({ type: 'setSchemaPolicy', schemasRequired: true, time: put.time, user: 'admin' }, asAdmin), 'ok');
    assert.equal(check({ type: 'resolveSchemaMigration', typeName: 'article', action: 'retry', time: put.time, user: 'admin' }, asAdmin), 'ok');
    assert.equal(check(putSchema, byAdmin), 'INTERNAL', 'under write authority');
    assert.equal(check({ ...putSchema, user: 'eve' }, asAdmin), 'INTERNAL');
    assert.equal(check({ ...putSchema, definition: { properties: { a: { pattern: '(a)\\1' } } } }, asAdmin), 'INVALID_SCHEMA');
    assert.equal(check({ ...putSchema, typeName: 'root' }, asAdmin), 'INVALID_REQUEST');
    assert.equal(check({ ...putSchema, extra: 1 }, asAdmin), 'INTERNAL');
    assert.equal(check({ type: 'setSchemaPolicy', schemasRequired: 'yes', time: put.time, user: 'admin' }, asAdmin), 'INTERNAL');
    assert.equal(check({ type: 'resolveSchemaMigration', typeName: 'article', action: 'undo', time: put.time, user: 'admin' }, asAdmin), 'INTERNAL');
    // Migration batches are the master's own job: never forwarded.
    assert.equal(check({ type: 'migrateSchema', typeName: 'article', toVersion: 2, afterId: '', nodesMax: 5, time: put.time }, asAdmin), 'INTERNAL');
  });

  test('input the routes would refuse is refused with the routes\' codes; a wrong shape or authority is INTERNAL', () => {
    assert.equal(check({ ...put, path: 'relative' }), 'INVALID_PATH');
    assert.equal(check({ ...put, path: '/a//b' }), 'INVALID_PATH');
    assert.equal(check({ ...put, nodeType: '9bad' }), 'INVALID_REQUEST');
    assert.equal(check({ ...put, properties: [] }), 'INVALID_PROPERTIES');
    assert.equal(check({ type: 'reorder', path: '/', order: ['a/b'], time: put.time, user: 'admin' }), 'INVALID_PATH');
    assert.equal(check({ type: 'putUser', name: 'bad name', roles: ['editor'], createOnly: false, time: put.time }, { user: 'admin', needs: 'admin' }), 'INVALID_REQUEST');
    assert.equal(check({ type: 'putUser', name: 'bob', roles: ['god'], createOnly: false, time: put.time }, { user: 'admin', needs: 'admin' }), 'INVALID_REQUEST');
    const restore = { type: 'restore', id: 'node-id', version: 3, path: '/a', time: put.time, user: 'admin' };
    assert.equal(check({ ...restore, path: 'a' }), 'INVALID_PATH');
    for (const version of [0, -1, 1.5, '3', null]) assert.equal(check({ ...restore, version }), 'INTERNAL', `version ${String(version)}`);
    for (const id of ['', 7, 'x'.repeat(200)]) assert.equal(check({ ...restore, id }), 'INTERNAL');
    assert.equal(check({ ...put, user: 'someone-else' }), 'INTERNAL');
    assert.equal(check({ ...put, time: 'yesterday' }), 'INTERNAL');
    assert.equal(check({ ...put, newId: 7 }), 'INTERNAL');
    assert.equal(check({ ...put, ifNoneMatch: 'x' }), 'INTERNAL');
    assert.equal(check(put, { user: 'admin', needs: 'root' }), 'INTERNAL');
    assert.equal(check(put, { user: 'admin', needs: 'admin' }), 'INTERNAL');
    assert.equal(check({ type: 'deleteUser', name: 'bob', time: put.time }, byAdmin), 'INTERNAL');
    assert.equal(check('put'), 'INTERNAL');
    // A user may change only its own password.
    const own = { type: 'putUser', name: 'bob', passwordHash: 'h', createOnly: false, time: put.time };
    assert.equal(check(own, { user: 'bob', needs: 'ownPassword' }), 'ok');
    assert.equal(check(own, { user: 'eve', needs: 'ownPassword' }), 'INTERNAL');
    assert.equal(check({ ...own, roles: ['admin'] }, { user: 'bob', needs: 'ownPassword' }), 'INTERNAL');
    // A node's recorded admin reset makes admin an admin with a new password, and nothing else.
    const reset = { type: 'putUser', name: 'admin', passwordHash: 'h', roles: ['admin'], createOnly: false, time: put.time };
    const byNode = { user: 'admin', needs: 'adminReset' };
    assert.equal(check(reset, byNode), 'ok');
    assert.equal(check({ ...reset, name: 'bob' }, { user: 'bob', needs: 'adminReset' }), 'INTERNAL');
    assert.equal(check({ ...reset, roles: ['admin', 'editor'] }, byNode), 'INTERNAL');
    const { passwordHash: _hash, ...rolesOnly } = reset;
    assert.equal(check(rolesOnly, byNode), 'INTERNAL');
    assert.equal(check({ type: 'deleteUser', name: 'admin', time: put.time }, byNode), 'INTERNAL');
    assert.equal(check(put, byNode), 'INTERNAL');
  });
});

describe('the command server (master side)', () => {
  function master(
    users: Record<string, User['roles']>,
    options: { propose?: (command: Command) => Promise<Committed>; appliedIndex?: number; now?: () => Date } = {},
  ) {
    const proposed: Command[] = [];
    const answers: { to: string; outcome: CommandOutcome }[] = [];
    const server = new CommandServer(
      {
        propose: (command) => {
          proposed.push(command);
          return options.propose?.(command) ?? Promise.resolve<Committed>({ index: 7, result: { created: true } });
        },
        appliedIndex: options.appliedIndex ?? 6,
        userByName: (name) =>
          users[name] === undefined ? undefined : ({ name, roles: users[name], passwordHash: 'h', version: 1, createdAt: put.time, modifiedAt: put.time } as User),
        send: (to, outcome) => {
          answers.push({ to, outcome });
          return true;
        },
        now: () => new Date('2030-01-01T00:00:00.000Z'),
      },
      silent,
    );
    return { server, proposed, answers, outcomes: () => answers.map((a) => a.outcome) };
  }
  const settled = () => new Promise((resolve) => setImmediate(resolve));

  test('proposes a valid command with the master\'s time and answers with the outcome', async () => {
    const { server, proposed, answers } = master({ admin: ['admin'] });
    server.receive('r', { type: 'commandRequest', id: 'x.1', command: put, authority: byAdmin });
    await settled();
    assert.deepEqual(proposed, [{ ...put, time: '2030-01-01T00:00:00.000Z' }]);
    assert.deepEqual(answers, [{ to: 'r', outcome: { type: 'commandOutcome', id: 'x.1', appliedIndex: 6, ok: true, index: 7, result: { created: true } } }]);
  });

  test('re-checks the author at proposal time: gone, demoted, or not an admin', async () => {
    const { server, proposed, answers } = master({ reader: ['reader'], editor: ['editor'] });
    server.receive('r', { type: 'commandRequest', id: 'x.1', command: { ...put, user: 'gone' }, authority: { user: 'gone', needs: 'write' } });
    server.receive('r', { type: 'commandRequest', id: 'x.2', command: { ...put, user: 'reader' }, authority: { user: 'reader', needs: 'write' } });
    server.receive('r', { type: 'commandRequest', id: 'x.3', command: { type: 'deleteUser', name: 'reader', time: put.time }, authority: { user: 'editor', needs: 'admin' } });
    await settled();
    assert.deepEqual(proposed, []);
    assert.deepEqual(
      answers.map(({ outcome }) => (outcome.ok ? 'ok' : outcome.error.code)),
      ['AUTH_INVALID', 'FORBIDDEN', 'FORBIDDEN'],
    );
  });

  test('a malformed request is answered (with an id) or dropped (without one), never proposed', async () => {
    const { server, proposed, answers } = master({ admin: ['admin'] });
    server.receive('r', { type: 'commandRequest', command: put, authority: byAdmin });
    server.receive('r', { type: 'commandRequest', id: 'x.2', command: { type: 'bootstrap' }, authority: byAdmin });
    server.receive('r', { type: 'commandRequest', id: 'x.3', command: put });
    await settled();
    assert.deepEqual(proposed, []);
    assert.deepEqual(
      answers.map(({ outcome }) => [outcome.id, outcome.ok ? 'ok' : outcome.error.code]),
      [
        ['x.2', 'INTERNAL'],
        ['x.3', 'INTERNAL'],
      ],
    );
  });

  test('a graceful stop refuses new commands (not applied) and waits for those under way to be answered', async () => {
    let commit: (committed: Committed) => void = () => undefined;
    const { server, proposed, outcomes } = master({ admin: ['admin'] }, { appliedIndex: 3, propose: () => new Promise<Committed>((resolve) => (commit = resolve)) });
    server.receive('r', { type: 'commandRequest', id: 'x.1', command: put, authority: byAdmin });
    assert.equal(server.commandsInFlight, 1);
    let closed = false;
    const closing = server.close(60_000).then(() => (closed = true));
    server.receive('r', { type: 'commandRequest', id: 'x.2', command: put, authority: byAdmin });
    await settled();
    assert.equal(proposed.length, 1, 'nothing new is proposed once stopping');
    assert.deepEqual(outcomes().map((a) => [a.id, a.ok ? 'ok' : a.error.code]), [['x.2', 'SHUTTING_DOWN']]);
    assert.equal(closed, false, 'the command under way holds the stop');
    commit({ index: 4, result: {} });
    await closing;
    assert.deepEqual(outcomes().map((a) => [a.id, a.ok ? 'ok' : a.error.code]), [['x.2', 'SHUTTING_DOWN'], ['x.1', 'ok']]);
  });

  test('a refused proposal (this node is no longer the master) travels back as it is', async () => {
    const { server, outcomes } = master(
      { admin: ['admin'] },
      { appliedIndex: 3, propose: () => Promise.reject(new ConclaveError('NOT_MASTER', 'This node is not the master; send writes to two.', { master: 'two' })) },
    );
    server.receive('r', { type: 'commandRequest', id: 'x.1', command: put, authority: byAdmin });
    await settled();
    assert.deepEqual(outcomes(), [
      { type: 'commandOutcome', id: 'x.1', appliedIndex: 3, ok: false, error: { code: 'NOT_MASTER', message: 'This node is not the master; send writes to two.', details: { master: 'two' } } },
    ]);
  });
});
