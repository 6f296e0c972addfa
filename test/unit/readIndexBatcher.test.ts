import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ReadIndexBatcher, type ReadIndexOutcome } from '../../src/node/readIndexBatcher.js';

/** A hand-driven clock: deferred work runs at turn(), timers at advance(). */
class ManualClock {
  now = 0;
  private deferred: Array<() => void> = [];
  private timers: Array<{ at: number; run: () => void; cancelled: boolean }> = [];

  nowMs = () => this.now;
  defer = (run: () => void) => void this.deferred.push(run);
  set = (run: () => void, delayMs: number) => {
    const timer = { at: this.now + delayMs, run, cancelled: false };
    this.timers.push(timer);
    return timer;
  };
  clear = (handle: unknown) => void ((handle as { cancelled: boolean }).cancelled = true);

  /** The end of an event-loop turn: what was deferred runs. */
  turn(): void {
    const due = this.deferred;
    this.deferred = [];
    for (const run of due) run();
  }

  advance(ms: number): void {
    this.now += ms;
    for (const timer of this.timers.filter((t) => !t.cancelled && t.at <= this.now)) {
      timer.cancelled = true;
      timer.run();
    }
  }
}

function setup(waitersMax = 100) {
  const clock = new ManualClock();
  const asked: string[] = [];
  let master: string | null = 'm1';
  const batcher = new ReadIndexBatcher<string>(
    clock,
    { master: () => master, confirm: (id) => asked.push(id), overloaded: (n) => `overloaded ${n}`, timedOut: () => 'timed out', notConfirmed: () => 'not confirmed' },
    { waitersMax, holdBackMs: 10, timeoutMs: 1000 },
    'n1',
  );
  const outcomes: Array<ReadIndexOutcome<string> | undefined> = [];
  const read = () => {
    const slot = outcomes.length;
    outcomes.push(undefined);
    batcher.request((outcome) => {
      assert.equal(outcomes[slot], undefined, `read ${slot} answered twice`);
      outcomes[slot] = outcome;
    });
    return slot;
  };
  return { clock, asked, batcher, outcomes, read, setMaster: (m: string | null) => (master = m) };
}

test('reads of one turn share one confirmation; reads arriving while it is asked wait for the next, never joining it', () => {
  const { clock, asked, batcher, outcomes, read } = setup();
  read();
  read();
  assert.deepEqual(asked, [], 'nothing asked before the turn ends');
  clock.turn();
  assert.deepEqual(asked, ['n1.1']);
  // Arrives after n1.1 was asked: its answer may miss a write acknowledged meanwhile.
  const late = read();
  clock.turn();
  assert.deepEqual(asked, ['n1.1'], 'held back while the first confirmation is in flight');
  batcher.answered('n1.1', 7);
  assert.deepEqual(outcomes.slice(0, 2), [
    { ok: true, index: 7 },
    { ok: true, index: 7 },
  ]);
  assert.equal(outcomes[late], undefined, 'the late read did not take the earlier answer');
  clock.turn();
  assert.deepEqual(asked, ['n1.1', 'n1.2']);
  batcher.answered('n1.2', 9);
  assert.deepEqual(outcomes[late], { ok: true, index: 9 });
  assert.equal(batcher.waiters, 0);
});

test('a confirmation unanswered past the hold-back, or asked of a former master, no longer holds the next back; one unanswered past the timeout fails its reads', () => {
  const { clock, asked, batcher, outcomes, read, setMaster } = setup();
  read();
  clock.turn();
  read();
  clock.turn();
  assert.deepEqual(asked, ['n1.1']);
  // Its answer was lost: after the hold-back the next batch goes by itself, without another read arriving.
  clock.advance(10);
  clock.turn();
  assert.deepEqual(asked, ['n1.1', 'n1.2']);
  // A new master: the confirmation asked of the old one holds nothing back.
  setMaster('m2');
  read();
  clock.turn();
  assert.deepEqual(asked, ['n1.1', 'n1.2', 'n1.3']);
  batcher.answered('n1.3', 4);
  assert.deepEqual(outcomes[2], { ok: true, index: 4 });
  clock.advance(1000);
  assert.deepEqual(outcomes.slice(0, 2), [
    { ok: false, error: 'timed out' },
    { ok: false, error: 'timed out' },
  ]);
  batcher.answered('n1.1', 3);
  assert.deepEqual(outcomes[0], { ok: false, error: 'timed out' }, 'an answer after the timeout changes nothing');
  assert.equal(batcher.waiters, 0);
});

test('a refusal, an abandoned coordinator, the bound on waiting reads and closing each answer every read exactly once', () => {
  const { clock, asked, batcher, outcomes, read } = setup(3);
  read();
  clock.turn();
  batcher.answered(asked[0]!, null);
  assert.deepEqual(outcomes[0], { ok: false, error: 'not confirmed' });
  read();
  clock.turn();
  read();
  // The coordinator asked is gone: what it was asked fails at once; the read not asked yet goes on.
  batcher.abandonAsked();
  assert.deepEqual(outcomes[1], { ok: false, error: 'not confirmed' });
  assert.equal(outcomes[2], undefined);
  clock.turn();
  assert.equal(asked.length, 3);
  read();
  read();
  const refused = read();
  assert.deepEqual(outcomes[refused], { ok: false, error: 'overloaded 3' }, 'three reads wait already');
  batcher.close('closed');
  assert.deepEqual(outcomes.slice(2, 5), [
    { ok: false, error: 'closed' },
    { ok: false, error: 'closed' },
    { ok: false, error: 'closed' },
  ]);
  assert.equal(batcher.waiters, 0);
});
