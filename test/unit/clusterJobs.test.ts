import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import { applyJobChange, jobChangeProblem, jobProgressCharsMax, jobsMax, type JobChange, type Jobs } from '../../src/core/clusterJobs.js';
import { applyClusterChange, applyClusterEntry, emptyClusterState, restoredClusterState, type ClusterChange, type ClusterState } from '../../src/core/clusterState.js';

const apply = (state: ClusterState, ...changes: ClusterChange[]) => changes.reduce(applyClusterChange, state);
const claimed = (owner: string, term: number, job = 'backup'): ClusterChange => ({ type: 'jobClaimed', job, owner, term });
const progress = (owner: string, term: number, version: number, value: unknown, job = 'backup'): ClusterChange =>
  ({ type: 'jobProgress', job, owner, term, version, progress: value as never });
const released = (owner: string, term: number, job = 'backup'): ClusterChange => ({ type: 'jobReleased', job, owner, term });

test('a claim records the owner and term; progress of the owner commits and counts versions', () => {
  const state = apply(emptyClusterState, claimed('a', 3), progress('a', 3, 0, { slot: 1 }), progress('a', 3, 1, { slot: 2 }));
  assert.deepEqual(state.jobs['backup'], { claim: { owner: 'a', term: 3 }, claimTerm: 3, progress: { slot: 2 }, version: 2 });
});

test("a deposed master's late progress changes nothing (fenced by owner and term)", () => {
  const claimedByB = apply(emptyClusterState, claimed('a', 3), progress('a', 3, 0, { slot: 1 }), claimed('b', 4));
  // a's proposal made in term 3, committed after b's claim: same version it was based on, and still refused.
  assert.equal(apply(claimedByB, progress('a', 3, 1, { slot: 2 })), claimedByB);
  // Nor does a's word count when re-elected later (term 5) with a proposal made in term 3.
  const reclaimed = apply(claimedByB, claimed('a', 5));
  assert.deepEqual(apply(reclaimed, progress('a', 3, 1, { slot: 2 })), reclaimed);
  // The new owner resumes from the committed progress.
  const resumed = apply(claimedByB, progress('b', 4, 1, { slot: 2 }));
  assert.deepEqual(resumed.jobs['backup'], { claim: { owner: 'b', term: 4 }, claimTerm: 4, progress: { slot: 2 }, version: 2 });
});

test('progress based on another version than the committed one changes nothing (no step committed twice)', () => {
  const state = apply(emptyClusterState, claimed('a', 3), progress('a', 3, 0, { batch: 1 }));
  assert.equal(apply(state, progress('a', 3, 0, { batch: 1 })), state, 'a second commit based on version 0');
  assert.equal(apply(state, progress('a', 3, 2, { batch: 3 })), state, 'a commit based on a version not reached');
});

test('a claim of an earlier or the same term leaves the current claim; a later term takes it over', () => {
  const state = apply(emptyClusterState, claimed('b', 4));
  assert.equal(apply(state, claimed('a', 3)), state);
  assert.equal(apply(state, claimed('a', 4)), state);
  assert.equal(apply(state, claimed('b', 4)), state, 'claiming again changes nothing');
  assert.deepEqual(apply(state, claimed('a', 5)).jobs['backup']!.claim, { owner: 'a', term: 5 });
});

test('release by the owner clears the claim and keeps the progress; anyone else changes nothing', () => {
  const state = apply(emptyClusterState, claimed('a', 3), progress('a', 3, 0, 7));
  assert.equal(apply(state, released('b', 3)), state);
  assert.equal(apply(state, released('a', 2)), state);
  const free = apply(state, released('a', 3));
  assert.deepEqual(free.jobs['backup'], { claim: null, claimTerm: 3, progress: 7, version: 1 });
  assert.equal(apply(free, progress('a', 3, 1, 8)), free, 'no progress without a claim');
  assert.deepEqual(apply(free, claimed('a', 3)).jobs['backup']!.claim, { owner: 'a', term: 3 }, 'a released job may be claimed again in its term');
  assert.equal(apply(free, claimed('b', 2)), free, 'but not in an earlier one');
});

test('jobRemoved forgets a job; jobs are kept in name order whatever order they came in', () => {
  const one = apply(emptyClusterState, claimed('a', 1, 'webhooks'), claimed('a', 1, 'backup'));
  const other = apply(emptyClusterState, claimed('a', 1, 'backup'), claimed('a', 1, 'webhooks'));
  assert.equal(JSON.stringify(one), JSON.stringify(other));
  assert.deepEqual(Object.keys(apply(one, { type: 'jobRemoved', job: 'backup' }).jobs), ['webhooks']);
});

test('bounds: job count, progress size and names are refused by the master and ignored at apply', () => {
  let jobs: Jobs = {};
  for (let i = 0; i < jobsMax; i++) jobs = applyJobChange(jobs, { type: 'jobClaimed', job: `j${i}`, owner: 'a', term: 1 });
  const extra: JobChange = { type: 'jobClaimed', job: 'one-more', owner: 'a', term: 1 };
  assert.match(jobChangeProblem(jobs, extra) ?? '', /already holds 64 jobs/);
  assert.equal(applyJobChange(jobs, extra), jobs);
  assert.equal(jobChangeProblem(jobs, { type: 'jobClaimed', job: 'j1', owner: 'b', term: 2 }), null, 'an existing job may be claimed');

  const big: JobChange = { type: 'jobProgress', job: 'j0', owner: 'a', term: 1, version: 0, progress: 'x'.repeat(jobProgressCharsMax) };
  assert.match(jobChangeProblem(jobs, big) ?? '', /more than the 65536/);
  assert.equal(applyJobChange(jobs, big), jobs);

  const badName: JobChange = { type: 'jobClaimed', job: 'Bad Name', owner: 'a', term: 1 };
  assert.match(jobChangeProblem({}, badName) ?? '', /job name/);
  assert.deepEqual(applyJobChange({}, badName), {});
});

test('a cluster state without jobs (a snapshot of an earlier release) reads as one with none', () => {
  const { jobs: _jobs, ...old } = apply(emptyClusterState, { type: 'settingsUpdated', settings: { a: 1 } });
  const restored = restoredClusterState(JSON.parse(JSON.stringify(old)) as ClusterState);
  assert.deepEqual(restored.jobs, {});
  assert.equal(JSON.stringify(restored), JSON.stringify(apply(emptyClusterState, { type: 'settingsUpdated', settings: { a: 1 } })), 'equal as JSON to one that never lacked it');
  assert.equal(restoredClusterState(emptyClusterState), emptyClusterState);
  const next = applyClusterEntry(restored, { index: 1, term: 1, payload: { kind: 'cluster', change: claimed('a', 1) } });
  assert.equal(next.version, restored.version + 1);
});

/**
 * Whatever masters come and go, and whatever order their proposals commit in: the applied progress of a job goes
 * 1, 2, 3… without a gap or a repeat, each applied step was proposed by the claim holder of the time, and a step
 * proposed by a claim holder that has since been replaced is never applied.
 */
test('property: applied progress is a gapless sequence, each step from the claim holder of its time', () => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('claim' as const), owner: fc.constantFrom('a', 'b', 'c'), term: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('progress' as const), owner: fc.constantFrom('a', 'b', 'c'), term: fc.integer({ min: 1, max: 8 }), version: fc.integer({ min: 0, max: 6 }) }),
    fc.record({ kind: fc.constant('release' as const), owner: fc.constantFrom('a', 'b', 'c'), term: fc.integer({ min: 1, max: 8 }) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      let state = emptyClusterState;
      let highestClaimTerm = 0;
      const appliedVersions: number[] = [];
      for (const s of steps) {
        const before = state.jobs['job'];
        const change: ClusterChange =
          s.kind === 'claim'
            ? claimed(s.owner, s.term, 'job')
            : s.kind === 'release'
              ? released(s.owner, s.term, 'job')
              : progress(s.owner, s.term, s.version, { by: s.owner, term: s.term, version: s.version + 1 }, 'job');
        state = applyClusterChange(state, change);
        const after = state.jobs['job'];
        if (s.kind === 'claim' && after?.claim?.term === s.term && after.claim.owner === s.owner) {
          assert.ok(s.term >= highestClaimTerm, 'claims only move forward in terms');
          highestClaimTerm = s.term;
        }
        if (s.kind === 'progress' && after !== before) {
          assert.deepEqual(before?.claim, { owner: s.owner, term: s.term }, 'applied progress came from the claim holder');
          assert.equal(s.term, highestClaimTerm, 'from the latest claim');
          appliedVersions.push(after!.version);
        }
      }
      assert.deepEqual(appliedVersions, appliedVersions.map((_, i) => i + 1));
    }),
    { numRuns: 500 },
  );
});
