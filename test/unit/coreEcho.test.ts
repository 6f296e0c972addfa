import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CoordinationCore } from '../../src/core/coordinationCore.js';
import type { AppendRequest, AppendResponse } from '../../src/core/types.js';
import { coreOptions, fresh } from '../helpers/coreOptions.js';

// An acknowledgement echoes the seq and send tick of the latest append from the master of its term: the master
// starts its lease from that tick and confirms read indexes with that seq (lease.ts points 2 and 3). A refusal of
// a delayed append from an earlier term carries the current term, so it reaches the master of the current term as
// one of its own answers: it must not echo what an earlier master sent. Simulator seed 418 (with the stragglers of
// issue 13): the master of term 5, restarted since it was master of term 3, took the echoed send tick 251 of its
// earlier incarnation for one of its own (its clock at 47) and held its lease after another master was elected.

const electionTimeoutTicks = 10;

const append = (term: number, seq: number, sentTick: number): AppendRequest => ({
  type: 'appendRequest',
  from: 'a',
  to: 'f',
  term,
  prevIndex: 1,
  prevTerm: 0,
  entries: [],
  commitIndex: 1,
  seq,
  sentTick,
});

test('a refusal sent in a later term echoes nothing of the appends of an earlier term', () => {
  const f = new CoordinationCore(coreOptions('f', 1, { electionTimeoutTicks }), fresh());
  f.bootstrap(['a', 'b', 'f']);
  f.advance(f.ready());
  // The master of term 1 reaches f: its acknowledgement echoes seq 48, sent at a's tick 251.
  f.step(append(1, 48, 251));
  const ack = f.ready().messages.find((m): m is AppendResponse => m.type === 'appendResponse');
  assert.ok(ack !== undefined && ack.success);
  assert.deepEqual([ack.term, ack.echoSeq, ack.echoSentTick], [1, 48, 251]);
  f.advance(f.ready());
  // An election timeout later, f votes in term 2 (a is master again there, say, after a restart).
  for (let i = 0; i < 2 * electionTimeoutTicks; i++) f.tick();
  f.advance(f.ready());
  f.step({ type: 'voteRequest', from: 'a', to: 'f', term: 2, lastIndex: 1, lastTerm: 0 });
  assert.equal(f.softState().term, 2);
  f.advance(f.ready());
  // A delayed append of term 1 arrives: f refuses it in term 2, which the master of term 2 reads as its own answer.
  f.step(append(1, 49, 260));
  const refusal = f.ready().messages.find((m): m is AppendResponse => m.type === 'appendResponse');
  assert.ok(refusal !== undefined);
  assert.equal(refusal.term, 2);
  assert.equal(refusal.success, false);
  assert.deepEqual([refusal.echoSeq, refusal.echoSentTick, refusal.recvTick], [0, 0, 0], 'the refusal echoes the append of term 1');
});
