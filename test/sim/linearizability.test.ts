import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import fc from 'fast-check';

import { bruteForceIsLinearizable } from './bruteForceLinearizability.js';
import {
  checkHistory,
  checkOperations,
  HistoryError,
  parseHistoryJsonLines,
  toOperations,
  type CheckResult,
  type EventType,
  type HistoryEvent,
  type JsonValue,
  type Operation,
  type OperationName,
  type RegisterKey,
} from './linearizability.js';
import { arrayNextInt, generateRegisterHistory, seededNextInt, type RegisterHistoryParams } from './registerHistoryGenerator.js';
import { propertyParameters } from './testSeed.js';

/** One event on key "x" unless told; times are the event indices. */
function ev(process: number, type: EventType, f: OperationName, value?: unknown, key: RegisterKey = 'x'): HistoryEvent {
  return value === undefined ? { process, type, f, key } : { process, type, f, key, value };
}
const timed = (events: HistoryEvent[]): HistoryEvent[] => events.map((event, time) => ({ ...event, time }));

/** A completed write, as two events. */
const write = (process: number, value: unknown, key: RegisterKey = 'x'): HistoryEvent[] => [ev(process, 'invoke', 'write', value, key), ev(process, 'ok', 'write', undefined, key)];
const read = (process: number, value: unknown, key: RegisterKey = 'x'): HistoryEvent[] => [ev(process, 'invoke', 'read', undefined, key), ev(process, 'ok', 'read', value, key)];

/**
 * Checks an ok result's witnesses independently of the search: each key's linearization contains
 * every ok operation, respects real-time order, and replays against a sequential register.
 */
function assertValidWitness(events: readonly HistoryEvent[], result: CheckResult): void {
  const operations = toOperations(events);
  for (const [key, keyResult] of result.perKey) {
    assert.equal(keyResult.verdict, 'ok');
    const order = keyResult.linearization!;
    const placed = new Set(order.map((op) => op.invokeIndex));
    for (const op of operations.filter((o) => o.key === key && o.outcome === 'ok')) {
      assert.ok(placed.has(op.invokeIndex), `witness for ${String(key)} leaves out an ok operation`);
    }
    assertSequentiallyValid(order);
  }
}

/** Real-time order holds and a sequential register explains every operation in `order`. */
function assertSequentiallyValid(order: readonly Operation[]): JsonValue {
  for (let i = 0; i < order.length; i++) {
    for (let j = i + 1; j < order.length; j++) {
      assert.ok(!(order[j].returnIndex < order[i].invokeIndex), 'order breaks real time');
    }
  }
  let value: JsonValue = null;
  for (const op of order) {
    if (op.f === 'read') {
      if (op.outcome === 'ok') assert.deepEqual(op.output, value, 'read out of order');
    } else if (op.f === 'write') {
      value = op.input;
    } else {
      const [expected, next] = op.input as [JsonValue, JsonValue];
      assert.deepEqual(expected, value, 'cas out of order');
      value = next;
    }
  }
  return value;
}

function assertOk(events: HistoryEvent[]): void {
  const result = checkHistory(events);
  assert.equal(result.verdict, 'ok', result.failure?.explanation.message);
  assert.equal(result.ok, true);
  assertValidWitness(events, result);
  assert.equal(bruteForceIsLinearizable(events), true, 'brute force disagrees');
}

function assertViolation(events: HistoryEvent[]): CheckResult {
  const result = checkHistory(events);
  assert.equal(result.verdict, 'violation');
  assert.equal(result.ok, false);
  assert.equal(bruteForceIsLinearizable(events), false, 'brute force disagrees');
  return result;
}

// --- Linearizable by hand ---------------------------------------------------------------------

test('a sequential write then read, and a read of an absent key', () => {
  assertOk([...read(1, null), ...write(1, 1), ...read(2, 1)]);
});

test('a read concurrent with a write may see the old value or the new', () => {
  for (const seen of [null, 1]) {
    assertOk([ev(1, 'invoke', 'write', 1), ev(2, 'invoke', 'read'), ev(2, 'ok', 'read', seen), ev(1, 'ok', 'write')]);
  }
});

test('concurrent writes may take effect in either order', () => {
  for (const [first, second] of [[1, 2], [2, 1]]) {
    assertOk([
      ev(1, 'invoke', 'write', 1), ev(2, 'invoke', 'write', 2),
      ev(3, 'invoke', 'read'), ev(3, 'ok', 'read', first), // during both writes
      ev(1, 'ok', 'write'), ev(2, 'ok', 'write'),
      ...read(3, second), ...read(4, second),
    ]);
  }
});

test('concurrent writes, then a read that needs the later-invoked write to go first', () => {
  // The search first tries write 1 then write 2; the cache must tell {both, state 2} from
  // {both, state 1}, or it prunes the order that works.
  assertOk([ev(1, 'invoke', 'write', 1), ev(2, 'invoke', 'write', 2), ev(1, 'ok', 'write'), ev(2, 'ok', 'write'), ...read(3, 1)]);
});

test('cas succeeds from the expected value; a failed cas is dropped', () => {
  assertOk([...write(1, 0), ev(2, 'invoke', 'cas', [0, 1]), ev(2, 'ok', 'cas'), ev(3, 'invoke', 'cas', [0, 5]), ev(3, 'fail', 'cas'), ...read(1, 1)]);
  assertOk([ev(2, 'invoke', 'cas', [null, 7]), ev(2, 'ok', 'cas'), ...read(1, 7)]); // null expects absent
});

test('concurrent cas from the same value: one wins, the other fails', () => {
  assertOk([
    ...write(1, 0),
    ev(1, 'invoke', 'cas', [0, 1]), ev(2, 'invoke', 'cas', [0, 2]),
    ev(2, 'fail', 'cas'), ev(1, 'ok', 'cas'),
    ...read(3, 1),
  ]);
});

test('an info write may or may not have taken effect', () => {
  const infoWrite = [...write(1, 1), ev(2, 'invoke', 'write', 2), ev(2, 'info', 'write')];
  assertOk([...infoWrite, ...read(3, 2)]);
  assertOk([...infoWrite, ...read(3, 1)]);
});

test('an info write may take effect late: after its info event and after reads of the old value', () => {
  assertOk([...write(1, 1), ev(2, 'invoke', 'write', 2), ev(2, 'info', 'write'), ...read(3, 1), ...read(3, 1), ...read(4, 2), ...read(3, 2)]);
});

test('an info cas may take effect late', () => {
  assertOk([...write(1, 1), ev(2, 'invoke', 'cas', [1, 2]), ev(2, 'info', 'cas'), ...read(3, 1), ...read(4, 2)]);
});

test('identical info writes: each may take effect, at a different time', () => {
  const twins = [...write(1, 1), ev(2, 'invoke', 'write', 2), ev(2, 'info', 'write'), ev(3, 'invoke', 'write', 2), ev(3, 'info', 'write')];
  assertOk([...twins, ...read(4, 2), ...write(1, 1), ...read(4, 1), ...read(4, 2)]);
  // With one info write of 2, the value cannot come back.
  assertViolation([...twins.slice(0, 4), ...read(4, 2), ...write(1, 1), ...read(4, 1), ...read(4, 2)]);
  // Nor can a twin invoked after the read that would need it.
  assertViolation([...write(1, 1), ev(2, 'invoke', 'write', 2), ev(2, 'info', 'write'), ...read(4, 2), ...write(1, 1), ...read(4, 2), ev(3, 'invoke', 'write', 2), ev(3, 'info', 'write')]);
});

test('identical info writes invoked at different times are used in invoke order', () => {
  // The second write of 2 is invoked only after the cas has consumed the first: found by fast-check
  // against a search that tried later twins first.
  assertOk([
    ev(2, 'invoke', 'write', 2), ev(2, 'info', 'write'),
    ev(6, 'invoke', 'cas', [2, 1]), ev(6, 'ok', 'cas'),
    ev(1, 'invoke', 'write', 2), ev(1, 'info', 'write'),
    ...read(4, 2),
  ]);
});

test('info writes feeding a chain of cas: each takes effect once, where needed', () => {
  // Found by fast-check against a cache that let a configuration with more info ops applied
  // prune one with fewer (fewer applied means more left to apply later).
  assertOk([
    ev(0, 'invoke', 'cas', [1, 1]), ev(3, 'invoke', 'write', 2), ev(1, 'invoke', 'write', 1),
    ev(0, 'ok', 'cas'),
    ev(0, 'invoke', 'cas', [2, 1]), ev(3, 'info', 'write'), ev(1, 'info', 'write'), ev(0, 'ok', 'cas'),
  ]);
});

test('an invoke that never completes counts as info', () => {
  assertOk([...write(1, 1), ev(2, 'invoke', 'write', 2), ...read(3, 1), ...read(3, 2)]);
  assertOk([...write(1, 1), ev(2, 'invoke', 'write', 2), ...read(3, 1)]);
});

test('an info read constrains nothing', () => {
  const events = [...write(1, 1), ev(2, 'invoke', 'read'), ev(2, 'info', 'read'), ...read(3, 1)];
  assertOk(events);
  assert.equal(checkHistory(events).perKey.get('x')!.operationCount, 2);
});

test('keys are independent, and values compare as JSON whatever the field order', () => {
  assertOk([
    ev(1, 'invoke', 'write', { a: 1, b: [2] }, 'x'), ev(2, 'invoke', 'write', 5, 'y'),
    ev(2, 'ok', 'write', undefined, 'y'), ev(1, 'ok', 'write', undefined, 'x'),
    ...read(3, { b: [2], a: 1 }, 'x'), ...read(3, 5, 'y'), ...read(4, null, 'z'),
  ]);
});

test('times that tie do not matter: order comes from event positions', () => {
  const events = [...write(1, 1), ...write(1, 2), ...read(2, 2)].map((event) => ({ ...event, time: 7 }));
  assertOk(events);
});

test('operations whose positions tie are concurrent', () => {
  // From timestamps rather than event indices: the write returns at 5, the read is invoked at 5.
  const base = { process: 1, key: 'k', invokeTime: 0, returnTime: 0 } as const;
  const operations: Operation[] = [
    { ...base, f: 'write', input: 1, output: undefined, outcome: 'ok', invokeIndex: 0, returnIndex: 5 },
    { ...base, process: 2, f: 'read', input: null, output: null, outcome: 'ok', invokeIndex: 5, returnIndex: 6 },
  ];
  assert.equal(checkOperations(operations).verdict, 'ok');
  assert.equal(checkOperations([operations[0], { ...operations[1], invokeIndex: 5.5 }]).verdict, 'violation');
  // An info write invoked when a read of its value returns may still explain that read.
  const infoWrite: Operation = { ...base, process: 3, f: 'write', input: 2, output: undefined, outcome: 'info', invokeIndex: 6, returnIndex: Infinity };
  const readOfTwo: Operation = { ...operations[1], output: 2 };
  assert.equal(checkOperations([operations[0], readOfTwo, infoWrite]).verdict, 'ok');
  assert.equal(checkOperations([operations[0], readOfTwo, { ...infoWrite, invokeIndex: 6.5 }]).verdict, 'violation');
});

// --- Not linearizable by hand -----------------------------------------------------------------

test('a stale read after a completed write is a violation, explained', () => {
  const result = assertViolation(timed([...write(1, 1), ...write(1, 2), ...read(2, 1)]));
  assert.equal(result.failure?.key, 'x');
  assert.equal(result.failure?.verdict, 'violation');
  const explanation = result.failure!.explanation;
  assert.deepEqual(explanation.longestPrefix.map((op) => op.input), [1, 2]);
  assert.equal(explanation.valueAfterPrefix, 2);
  assert.equal(explanation.unplaced.length, 1);
  assert.equal(explanation.unplaced[0].f, 'read');
  assert.equal(explanation.unplaced[0].output, 1);
  assert.match(explanation.message, /process 2 read → 1 \(events 4\.\.5\), but the register holds 2\./);
});

test('a read of a value never written is a violation', () => {
  assertViolation([...write(1, 1), ev(2, 'invoke', 'read'), ev(1, 'invoke', 'write', 2), ev(2, 'ok', 'read', 3), ev(1, 'ok', 'write')]);
  assertViolation(read(1, 0)); // absent reads as null, not 0
});

test('two cas from the same expected value cannot both succeed', () => {
  // Overlapping.
  assertViolation([...write(1, 0), ev(1, 'invoke', 'cas', [0, 1]), ev(2, 'invoke', 'cas', [0, 2]), ev(1, 'ok', 'cas'), ev(2, 'ok', 'cas')]);
  // One after the other.
  assertViolation([...write(1, 0), ev(1, 'invoke', 'cas', [0, 1]), ev(1, 'ok', 'cas'), ev(2, 'invoke', 'cas', [0, 2]), ev(2, 'ok', 'cas')]);
});

test('a read that sees the new value, then a later read that sees the old, is a violation', () => {
  const result = assertViolation([
    ...write(1, 1),
    ev(2, 'invoke', 'write', 2),
    ...read(3, 2),
    ...read(4, 1), // strictly after the read of 2, while the write of 2 is still running
    ev(2, 'ok', 'write'),
  ]);
  assert.match(result.failure!.explanation.message, /read → 1 \(events 5\.\.6\), but the register holds 2\./);
});

test('an info op cannot explain a read before its invoke, nor take effect twice', () => {
  assertViolation([...write(1, 1), ...read(3, 2), ev(2, 'invoke', 'write', 2), ev(2, 'info', 'write')]);
  assertViolation([...write(1, 1), ev(2, 'invoke', 'cas', [1, 2]), ev(2, 'info', 'cas'), ...read(3, 2), ...read(3, 1)]);
});

test('a violation on one key is reported with that key; other keys stay ok', () => {
  const result = checkHistory([...write(1, 1, 'a'), ...write(1, 1, 'b'), ...write(1, 2, 'b'), ...read(2, 1, 'b'), ...read(2, 1, 'a')]);
  assert.equal(result.ok, false);
  assert.equal(result.failure?.key, 'b');
  assert.equal(result.perKey.get('a')?.verdict, 'ok');
  assert.equal(result.perKey.get('b')?.verdict, 'violation');
  assert.deepEqual([...result.perKey.keys()], ['a', 'b']);
});

test('running out of search steps is unknown, never ok', () => {
  const events = [...write(1, 1), ...write(1, 2), ...read(2, 2), ...read(2, 2)];
  const result = checkHistory(events, { searchStepsMax: 2 });
  assert.equal(result.ok, false);
  assert.equal(result.verdict, 'unknown');
  assert.equal(result.failure?.verdict, 'unknown');
  assert.match(result.failure!.explanation.message, /unknown, the search gave up after 2 steps/);
  assert.equal(checkHistory(events).verdict, 'ok');
});

// --- Input validation -------------------------------------------------------------------------

function assertHistoryError(events: HistoryEvent[], eventIndex: number, pattern: RegExp): void {
  assert.throws(() => checkHistory(events), (err: unknown) => {
    assert.ok(err instanceof HistoryError, String(err));
    assert.equal(err.eventIndex, eventIndex);
    assert.match(err.message, new RegExp(`^history event ${eventIndex}: `));
    assert.match(err.message, pattern);
    return true;
  });
}

test('a process with two outstanding invokes is rejected, naming the event', () => {
  assertHistoryError([ev(1, 'invoke', 'read'), ev(1, 'invoke', 'write', 1)], 1, /outstanding/);
});

test('a completion must match the outstanding invoke', () => {
  assertHistoryError([...write(1, 1), ev(2, 'ok', 'read', 1)], 2, /never invoked/);
  assertHistoryError([ev(1, 'invoke', 'read'), ev(1, 'ok', 'write')], 1, /outstanding invoke \(event 0\) is read/);
  assertHistoryError([ev(1, 'invoke', 'read', undefined, 'x'), ev(1, 'ok', 'read', 1, 'y')], 1, /key "y"/);
  assertHistoryError([...write(1, 1), ev(1, 'fail', 'write')], 2, /never invoked/);
});

test('malformed events are rejected, naming the event', () => {
  assertHistoryError([ev(1, 'invoke', 'cas', 3)], 0, /\[expected, new\]/);
  assertHistoryError([ev(1, 'invoke', 'write')], 0, /value to write/);
  assertHistoryError([...read(1, null).slice(0, 1), ev(1, 'ok', 'read')], 1, /value read/);
  assertHistoryError([ev(1, 'invoke', 'write', 1), { ...ev(1, 'ok', 'write'), type: 'done' as EventType }], 1, /type must be/);
  assertHistoryError([{ ...ev(1, 'invoke', 'read'), f: 'delete' as OperationName }], 0, /f must be/);
  assertHistoryError([ev(1, 'invoke', 'write', Number.NaN)], 0, /not JSON/);
  assertHistoryError([{ ...ev(1, 'invoke', 'read'), time: 5 }, { ...ev(1, 'ok', 'read', null), time: 4 }], 1, /real-time order/);
});

test('JSON lines parse into events; a bad line is named', () => {
  const text = `${timed([...write(1, 'a'), ...read(2, 'a')]).map((event) => JSON.stringify(event)).join('\n')}\n\n`;
  const events = parseHistoryJsonLines(text);
  assert.equal(events.length, 4);
  assert.equal(checkHistory(events).ok, true);
  assert.deepEqual(toOperations(events)[1], {
    process: 2, f: 'read', key: 'x', input: null, output: 'a', outcome: 'ok', invokeTime: 2, returnTime: 3, invokeIndex: 2, returnIndex: 3,
  });
  assert.throws(() => parseHistoryJsonLines('{"process":1}\n\n{oops'), /history event 1: line 3 is not JSON/);
});

test('operations carry Infinity as the return of an info op', () => {
  const [op] = toOperations([{ process: 'c1', type: 'invoke', f: 'write', key: 'k', value: 3, time: 10 }, { process: 'c1', type: 'info', f: 'write', key: 'k', time: 20 }]);
  assert.equal(op.outcome, 'info');
  assert.equal(op.invokeTime, 10);
  assert.equal(op.returnTime, Infinity);
  assert.equal(op.returnIndex, Infinity);
});

test('the checker stays pure: no node:* imports, clock or ambient randomness', () => {
  // The lint rules that enforce this cover src/core and src/content only, so check the source here.
  for (const file of ['linearizability.ts', 'linearizabilitySearch.ts']) {
    const source = readFileSync(new URL(`../../../test/sim/${file}`, import.meta.url), 'utf8');
    for (const forbidden of [/from ['"]node:/, /\bimport\(/, /\bDate\b/, /Math\.random/, /\bperformance\b/, /process\.env/, /setTimeout|setInterval|setImmediate/]) {
      assert.doesNotMatch(source, forbidden, file);
    }
  }
});

// --- Property-based ---------------------------------------------------------------------------

/** Small enough for the brute-force checker: at most 7 operations. */
const smallHistoryParams = fc.record({
  processCount: fc.integer({ min: 1, max: 4 }),
  keys: fc.constantFrom<RegisterKey[]>(['x'], ['x', 'y']),
  valueCount: fc.integer({ min: 1, max: 3 }),
  operationCountMax: fc.integer({ min: 2, max: 7 }),
  stepCount: fc.integer({ min: 8, max: 40 }),
  abandonPercent: fc.constantFrom(0, 15, 40, 75),
  infoPercent: fc.constantFrom(0, 15, 40, 75),
});

const largerHistoryParams = fc.record({
  processCount: fc.integer({ min: 1, max: 6 }),
  keys: fc.constantFrom<RegisterKey[]>(['x'], ['x', 'y'], ['x', 'y', 'z']),
  valueCount: fc.integer({ min: 1, max: 4 }),
  operationCountMax: fc.integer({ min: 1, max: 60 }),
  stepCount: fc.integer({ min: 20, max: 300 }),
  abandonPercent: fc.constantFrom(0, 5, 20, 50),
  infoPercent: fc.constantFrom(0, 5, 20, 50),
});

const choices = fc.array(fc.nat({ max: 0xffff }), { minLength: 40, maxLength: 1200 });

const history = (params: fc.Arbitrary<RegisterHistoryParams>): fc.Arbitrary<HistoryEvent[]> =>
  fc.tuple(params, choices).map(([p, c]) => generateRegisterHistory(arrayNextInt(c), p));

test('property: histories of a real register are linearizable, with a valid witness', () => {
  fc.assert(
    fc.property(history(largerHistoryParams), (events) => {
      const result = checkHistory(events);
      assert.equal(result.verdict, 'ok', result.failure?.explanation.message);
      assertValidWitness(events, result);
    }),
    propertyParameters(300),
  );
});

/** Indices of events whose reported outcome can be falsified: ok reads, ok and failed cas. */
const mutableIndices = (events: readonly HistoryEvent[]): number[] =>
  events.flatMap((event, index) => ((event.type === 'ok' && event.f === 'read') || (event.f === 'cas' && (event.type === 'ok' || event.type === 'fail')) ? [index] : []));

/** Lies about one outcome: a read sees `value`, or a cas flips between ok and fail. */
function falsify(events: readonly HistoryEvent[], index: number, value: number | null): HistoryEvent[] {
  const copy = [...events];
  const event = copy[index];
  copy[index] = event.f === 'read' ? { ...event, value } : { ...event, type: event.type === 'ok' ? 'fail' : 'ok' };
  return copy;
}

/** Agreement with brute force, plus what a verdict promises: a witness, or a coherent explanation. */
function assertAgreesWithBruteForce(events: HistoryEvent[], searchStepsMax?: number): CheckResult {
  const result = checkHistory(events, { searchStepsMax });
  const expected = bruteForceIsLinearizable(events);
  if (result.verdict === 'unknown') {
    assert.equal(result.ok, false);
    return result;
  }
  assert.equal(result.ok, expected, `checker says ${result.verdict}, brute force says ${expected ? 'ok' : 'violation'}`);
  if (result.ok) {
    assertValidWitness(events, result);
  } else {
    // The prefix replays, and none of the operations that could come next fits after it.
    const explanation = result.failure!.explanation;
    assert.deepEqual(assertSequentiallyValid(explanation.longestPrefix), explanation.valueAfterPrefix);
    assert.ok(explanation.unplaced.length > 0);
    for (const op of explanation.unplaced) {
      assert.notEqual(op.f, 'write');
      assert.throws(() => assertSequentiallyValid([...explanation.longestPrefix, op]));
    }
  }
  return result;
}

test('property: one read changed to a value never written is caught, as brute force agrees', () => {
  let caught = 0;
  fc.assert(
    fc.property(history(smallHistoryParams), fc.nat(), (events, pick) => {
      const reads = events.flatMap((event, index) => (event.type === 'ok' && event.f === 'read' ? [index] : []));
      fc.pre(reads.length > 0);
      const neverWritten = 99;
      const mutated = falsify(events, reads[pick % reads.length], neverWritten);
      assert.equal(bruteForceIsLinearizable(mutated), false);
      assert.equal(assertAgreesWithBruteForce(mutated).verdict, 'violation');
      caught++;
    }),
    propertyParameters(300),
  );
  assert.ok(caught > 100, `only ${caught} histories had a read to change`);
});

test('property: agrees with brute force on small histories with falsified outcomes and info ops', (t) => {
  const verdicts = { ok: 0, violation: 0, withInfo: 0 };
  fc.assert(
    fc.property(history(smallHistoryParams), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 4 })), { minLength: 1, maxLength: 2 }), (events, lies) => {
      let mutated = events;
      for (const [pick, value] of lies) {
        const candidates = mutableIndices(mutated);
        if (candidates.length > 0) mutated = falsify(mutated, candidates[pick % candidates.length], value === 0 ? null : value);
      }
      const result = assertAgreesWithBruteForce(mutated);
      verdicts[result.ok ? 'ok' : 'violation']++;
      if (toOperations(mutated).some((op) => op.outcome === 'info')) verdicts.withInfo++;
    }),
    propertyParameters(1500),
  );
  t.diagnostic(`verdicts: ${JSON.stringify(verdicts)}`);
  // The property is only worth something if both verdicts, and info ops, turn up often.
  assert.ok(verdicts.ok > 300 && verdicts.violation > 300 && verdicts.withInfo > 300, JSON.stringify(verdicts));
});

test('property: with a tiny step budget the verdict is unknown or agrees with brute force', () => {
  fc.assert(
    fc.property(history(smallHistoryParams), fc.nat(), fc.integer({ min: 1, max: 30 }), (events, pick, searchStepsMax) => {
      const candidates = mutableIndices(events);
      const mutated = candidates.length > 0 && pick % 2 === 0 ? falsify(events, candidates[pick % candidates.length], 1) : events;
      assertAgreesWithBruteForce(mutated, searchStepsMax);
    }),
    propertyParameters(500),
  );
});

// --- Performance sanity -----------------------------------------------------------------------

test('2,000 operations over 5 keys from 8 processes check ok', (t) => {
  const events = generateRegisterHistory(seededNextInt(20240601), {
    processCount: 8,
    keys: ['k0', 'k1', 'k2', 'k3', 'k4'],
    valueCount: 5,
    operationCountMax: 2000,
    stepCount: 20_000,
    abandonPercent: 2,
    infoPercent: 2,
  });
  assert.equal(events.filter((event) => event.type === 'invoke').length, 2000);
  const operations = toOperations(events); // fails dropped
  const result = checkHistory(events, { searchStepsMax: 50_000_000 });
  assert.equal(result.verdict, 'ok', result.failure?.explanation.message);
  assertValidWitness(events, result);
  const steps = [...result.perKey.values()].map((r) => r.searchSteps);
  t.diagnostic(`${operations.length} operations after dropping fails (${operations.filter((op) => op.outcome === 'info').length} info), search steps per key: ${steps.join(', ')}`);
});
