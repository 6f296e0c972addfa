import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { Message } from '../../src/core/types.js';
import { commands, Driver, voters, type CoreNode } from '../helpers/coreDriver.js';

// lease.ts point 1: a node that heard from a master less than an election timeout ago grants no vote — whatever
// moved it into the candidate's term. The core checked it only for a vote request whose term was above the node's
// own; a node already moved into that term (by a delayed refusal, by stepping down as master, by a restart with the
// term persisted and no vote) granted it, and a new master could acknowledge writes while the old one still held
// its lease and served sequential reads without them (issue 13, item 2).

const electionTimeoutTicks = 10;

const role = (n: CoreNode) => n.core.softState().role;
const term = (n: CoreNode) => n.core.softState().term;
const voteFrom = (from: string, to: string) => (m: Message) => m.type === 'voteRequest' && m.from === from && m.to === to;

/**
 * The schedule of issue 13 item 2, up to the point where F, sticky to M, is in C's term with no vote and C's delayed
 * vote request is due: master M (term T) pauses; C pre-votes (F grants) and becomes candidate in T+1, its vote
 * request to F delayed; F pre-votes, C refuses with T+1 and that refusal is delayed too; M resumes and heartbeats F,
 * which acknowledges (M's lease is fresh, anchored on F); the delayed refusal moves F to T+1.
 */
function staleRefusalSchedule(): { driver: Driver; m: CoreNode; c: CoreNode; f: CoreNode; t: number } {
  const driver = new Driver(voters, { electionTimeoutTicks });
  const m = driver.elect();
  for (const data of commands(0, 2)) driver.propose(m, data);
  driver.tick(2);
  const t = term(m);
  assert.ok(m.core.hasReadLease());
  // Every vote request and every refused pre-vote is held back until the test delivers it.
  driver.stashIf = (msg) => msg.type === 'voteRequest' || (msg.type === 'preVoteResponse' && !msg.granted);
  driver.pause(m.id);
  const others = voters.filter((id) => id !== m.id).map((id) => driver.node(id));
  driver.tickUntil(() => others.some((n) => role(n) === 'candidate'), 4 * electionTimeoutTicks, 'a candidate');
  const c = others.find((n) => role(n) === 'candidate')!;
  const f = others.find((n) => n !== c)!;
  assert.equal(term(c), t + 1);
  assert.equal(term(f), t, 'F granted the pre-vote, which changes no term');
  driver.tickUntil(() => role(f) === 'preCandidate', 2 * electionTimeoutTicks, 'F pre-votes');
  assert.ok(driver.stashed.some((msg) => msg.type === 'preVoteResponse' && msg.from === c.id && msg.to === f.id && msg.term === t + 1), 'C refused F with T+1');
  // M resumes; everything between M and C stays on the slow route, so M does not learn of T+1.
  const stash = driver.stashIf;
  driver.stashIf = (msg) => stash(msg) || (msg.from === m.id && msg.to === c.id) || (msg.from === c.id && msg.to === m.id);
  driver.resume(m.id);
  driver.tick(1);
  assert.equal(role(m), 'master');
  assert.equal(role(f), 'follower');
  assert.equal(f.core.softState().master, m.id);
  assert.ok(m.core.hasReadLease(), 'M holds a fresh lease, anchored on F');
  // The delayed refusal moves F into T+1, its vote cleared — one tick after it heard from M.
  driver.deliverStashed((msg) => msg.type === 'preVoteResponse' && msg.from === c.id && msg.to === f.id);
  assert.equal(term(f), t + 1);
  assert.equal(f.core.hardState().votedFor, null);
  return { driver, m, c, f, t };
}

test('a voter moved into the candidate term by a delayed refusal grants no vote while it heard from the master', () => {
  const { driver, m, c, f } = staleRefusalSchedule();
  driver.deliverStashed(voteFrom(c.id, f.id));
  assert.notEqual(role(c), 'master', `${c.id} elected while ${m.id} holds its lease (lease.ts point 1)`);
  assert.equal(f.core.hardState().votedFor, null, 'F voted while sticky');
  assert.ok(m.core.hasReadLease());
  // Liveness is not lost: once M is gone for an election timeout, C (or F) is elected.
  driver.down.add(m.id);
  driver.stashIf = null;
  driver.tickUntil(() => driver.masters().length === 1 && driver.masters()[0]!.id !== m.id, 6 * electionTimeoutTicks, 'a new master');
});

test('a master that just stepped down on a higher term grants no vote for an election timeout', () => {
  const { driver, m, c, t } = staleRefusalSchedule();
  // C's delayed answer to one of M's heartbeats (a refusal in T+1) makes M step down into T+1 with no vote.
  driver.deliverStashed((msg) => msg.from === m.id && msg.to === c.id && msg.type === 'appendRequest');
  driver.deliverStashed((msg) => msg.from === c.id && msg.to === m.id && msg.type === 'appendResponse');
  assert.equal(role(m), 'follower');
  assert.equal(term(m), t + 1);
  assert.equal(m.core.hardState().votedFor, null);
  driver.deliverStashed(voteFrom(c.id, m.id));
  assert.equal(m.core.hardState().votedFor, null, 'the master that just stepped down voted at once');
  assert.notEqual(role(c), 'master');
});

test('a node restarted with the candidate term persisted and no vote grants no vote for an election timeout', () => {
  const { driver, c, f, t } = staleRefusalSchedule();
  // F crashes with T+1 and no vote on its disk, and boots again: it counts as just contacted.
  assert.equal(f.disk.hardState.term, t + 1);
  assert.equal(f.disk.hardState.votedFor, null);
  driver.restart(f.id);
  driver.deliverStashed(voteFrom(c.id, f.id));
  assert.equal(f.core.hardState().votedFor, null, 'the restarted node voted at once');
  assert.notEqual(role(c), 'master');
  // Once an election timeout has passed without a master, the restarted node votes again.
  for (let i = 0; i < electionTimeoutTicks; i++) f.core.tick();
  const request: Message = { type: 'voteRequest', from: c.id, to: f.id, term: t + 1, lastIndex: c.core.lastIndex(), lastTerm: t };
  f.core.step(request);
  assert.equal(f.core.hardState().votedFor, c.id);
});
