/**
 * Linearizability checker for a key-value register with read, write and compare-and-set.
 *
 * Pure and deterministic (no I/O, clock or ambient randomness) so that a simulator run replayed
 * from a seed yields the same verdict, and so the chaos harness can check recorded histories.
 *
 * Algorithm: Wing & Gong's backtracking search with Lowe's improvements, as in Knossos and
 * Porcupine (see linearizabilitySearch.ts). The history is a doubly linked list of call and return
 * entries in real-time order; the search linearizes ("lifts") a call whose operation the sequential
 * model accepts, and backtracks when it reaches a return entry whose operation it has not
 * linearized. A cache of (set of linearized operations, model state) prunes configurations already
 * explored, which turns the search from exponential in the history length into, in practice,
 * exponential only in the concurrency. The register for each key is independent of the others (a
 * KV register is the product of single registers), so by P-compositionality each key is checked on
 * its own. This file holds the history format, its validation, the split by key and the reports.
 *
 * History conventions (Jepsen-style):
 * - `fail`: the operation certainly did not take effect, so it is dropped.
 * - `info`: the outcome is unknown. The operation may take effect at any instant after its
 *   invoke, or never, so it gets no return entry (return time +Infinity) and a linearization need
 *   not include it. An invoke with no completion by the end of the history is treated the same.
 * - A cas that reports `ok` succeeded; a cas whose comparison failed is expected to report `fail`.
 * - The register starts absent; a read of an absent key returns null, so writing null and being
 *   absent are the same state, and cas expecting null succeeds on an absent key.
 *
 * Real-time order is the order of the events in the list (the times are carried for reports only):
 * an operation precedes another when its completion event comes before the other's invoke event.
 */

import {
  applyOperation,
  CAS,
  READ,
  REJECTED,
  searchLinearization,
  WRITE,
  type CompiledOperations,
  type SearchOutcome,
} from './linearizabilitySearch.js';

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [field: string]: JsonValue };
export type ProcessId = string | number;
export type RegisterKey = string | number;
export type EventType = 'invoke' | 'ok' | 'fail' | 'info';
export type OperationName = 'read' | 'write' | 'cas';

/** One line of a history, as the simulator and the chaos harness record it. */
export interface HistoryEvent {
  readonly process: ProcessId;
  readonly type: EventType;
  readonly f: OperationName;
  readonly key: RegisterKey;
  /** write: the value; cas: [expected, new]; ok of a read: what was read (null for absent). */
  readonly value?: unknown;
  /** Informational; if present it must not decrease along the history. */
  readonly time?: number;
}

/** An invoke paired with its completion. Fails are dropped, so `outcome` is ok or info. */
export interface Operation {
  readonly process: ProcessId;
  readonly f: OperationName;
  readonly key: RegisterKey;
  /** read: null; write: the value written; cas: [expected, new]. */
  readonly input: JsonValue;
  /** The value an ok read returned; undefined for writes, cas and any info operation. */
  readonly output: JsonValue | undefined;
  readonly outcome: 'ok' | 'info';
  /** The event's time, or the event's index when the event has no time. */
  readonly invokeTime: number;
  /** Infinity for info: the operation may take effect at any time after its invoke. */
  readonly returnTime: number;
  /**
   * Positions in the history's total order (event indices for `toOperations`). These, not the
   * times, decide real-time precedence. Equal positions count as concurrent.
   */
  readonly invokeIndex: number;
  /** Infinity for info. */
  readonly returnIndex: number;
}

export type Verdict = 'ok' | 'violation' | 'unknown';

export interface Explanation {
  /**
   * The explored linearization prefix that places the most ok operations, in order; it may include
   * info operations, taken to have taken effect there.
   */
  readonly longestPrefix: readonly Operation[];
  /** The register's value after that prefix (null for absent). */
  readonly valueAfterPrefix: JsonValue;
  /**
   * The ok operations that could come next after the prefix in real-time order (those invoked by
   * the earliest return among the ok operations not placed). For a violation none of them fits the
   * register's value, even after applying any pending info operations.
   */
  readonly unplaced: readonly Operation[];
  readonly message: string;
}

export interface KeyCheckResult {
  readonly key: RegisterKey;
  readonly verdict: Verdict;
  /** Operations the search considered (info reads are left out: they constrain nothing). */
  readonly operationCount: number;
  readonly searchSteps: number;
  /**
   * For `ok`: a witness that can be replayed and checked: every ok operation, plus the info
   * operations taken to have taken effect, in a valid linearization order.
   */
  readonly linearization?: readonly Operation[];
  /** For `violation` and `unknown`. */
  readonly explanation?: Explanation;
}

export interface CheckResult {
  /** True only when every key is linearizable; `unknown` is never ok. */
  readonly ok: boolean;
  /** violation if any key has one, else unknown if any key gave up, else ok. */
  readonly verdict: Verdict;
  /** In order of each key's first invoke. */
  readonly perKey: ReadonlyMap<RegisterKey, KeyCheckResult>;
  /** The first key (in perKey order) with a violation, else the first that gave up. */
  readonly failure?: { readonly key: RegisterKey; readonly verdict: 'violation' | 'unknown'; readonly explanation: Explanation };
}

export interface CheckOptions {
  /**
   * For each key, the number of search steps (model step attempts plus backtracks) after which the
   * key's verdict is `unknown` instead of searching on.
   */
  readonly searchStepsMax?: number;
}

export const defaultSearchStepsMax = 10_000_000;

/** A malformed history. `eventIndex` is the 0-based index of the offending event. */
export class HistoryError extends Error {
  readonly eventIndex: number;
  constructor(eventIndex: number, detail: string) {
    super(`history event ${eventIndex}: ${detail}`);
    this.name = 'HistoryError';
    this.eventIndex = eventIndex;
  }
}

/** Parses JSON lines (blank lines skipped) into events; shape is validated by `toOperations`. */
export function parseHistoryJsonLines(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const lines = text.split('\n');
  for (let lineIndex = 0; lineIndex < lines.length; lineIndex++) {
    const line = lines[lineIndex].trim();
    if (line === '') continue;
    try {
      events.push(JSON.parse(line) as HistoryEvent);
    } catch (err) {
      throw new HistoryError(events.length, `line ${lineIndex + 1} is not JSON: ${(err as Error).message}`);
    }
  }
  return events;
}

interface OpenInvoke {
  readonly eventIndex: number;
  readonly event: HistoryEvent;
  readonly input: JsonValue;
  readonly invokeTime: number;
  /** Where the operation goes in the result, which is in invoke order. */
  readonly slot: number;
}

/**
 * Pairs invokes with completions and validates the history. Throws HistoryError naming the event
 * when a process invokes while it has an outstanding invoke, or a completion does not match the
 * process's outstanding invoke. Operations come out in invoke order; fails are dropped.
 */
export function toOperations(events: readonly HistoryEvent[]): Operation[] {
  const slots: Array<Operation | undefined> = [];
  const open = new Map<ProcessId, OpenInvoke>();
  let lastTime = -Infinity;
  for (let index = 0; index < events.length; index++) {
    const event = events[index];
    validateEventShape(event, index);
    if (event.time !== undefined) {
      if (event.time < lastTime) {
        throw new HistoryError(index, `time ${event.time} is before the previous event's time ${lastTime}: the list is not in real-time order`);
      }
      lastTime = event.time;
    }
    const time = event.time ?? index;
    const outstanding = open.get(event.process);
    if (event.type === 'invoke') {
      if (outstanding !== undefined) {
        throw new HistoryError(index, `process ${String(event.process)} invokes ${event.f} while its ${outstanding.event.f} (event ${outstanding.eventIndex}) is outstanding`);
      }
      open.set(event.process, { eventIndex: index, event, input: invokeInput(event, index), invokeTime: time, slot: slots.length });
      slots.push(undefined);
      continue;
    }
    if (outstanding === undefined) {
      throw new HistoryError(index, `process ${String(event.process)} completes (${event.type}) a ${event.f} it never invoked`);
    }
    if (outstanding.event.f !== event.f || outstanding.event.key !== event.key) {
      throw new HistoryError(index, `process ${String(event.process)} completes ${event.f} on key ${JSON.stringify(event.key)}, but its outstanding invoke (event ${outstanding.eventIndex}) is ${outstanding.event.f} on key ${JSON.stringify(outstanding.event.key)}`);
    }
    open.delete(event.process);
    if (event.type === 'fail') continue;
    let output: JsonValue | undefined;
    if (event.type === 'ok' && event.f === 'read') {
      if (event.value === undefined) throw new HistoryError(index, 'an ok read must carry the value read (null for absent)');
      output = checkedJson(event.value, index);
    }
    const isInfo = event.type === 'info';
    slots[outstanding.slot] = {
      process: event.process,
      f: event.f,
      key: event.key,
      input: outstanding.input,
      output,
      outcome: isInfo ? 'info' : 'ok',
      invokeTime: outstanding.invokeTime,
      returnTime: isInfo ? Infinity : time,
      invokeIndex: outstanding.eventIndex,
      returnIndex: isInfo ? Infinity : index,
    };
  }
  // A process that never heard back (the harness stopped, the client crashed): outcome unknown.
  for (const pending of open.values()) {
    slots[pending.slot] = {
      process: pending.event.process,
      f: pending.event.f,
      key: pending.event.key,
      input: pending.input,
      output: undefined,
      outcome: 'info',
      invokeTime: pending.invokeTime,
      returnTime: Infinity,
      invokeIndex: pending.eventIndex,
      returnIndex: Infinity,
    };
  }
  return slots.filter((op): op is Operation => op !== undefined);
}

const eventTypes: ReadonlySet<string> = new Set(['invoke', 'ok', 'fail', 'info']);
const operationNames: ReadonlySet<string> = new Set(['read', 'write', 'cas']);

function validateEventShape(event: HistoryEvent, index: number): void {
  if (typeof event !== 'object' || event === null) throw new HistoryError(index, 'not an object');
  if (!isProcessOrKey(event.process)) throw new HistoryError(index, `process must be a string or a finite number, got ${JSON.stringify(event.process)}`);
  if (!eventTypes.has(event.type)) throw new HistoryError(index, `type must be invoke, ok, fail or info, got ${JSON.stringify(event.type)}`);
  if (!operationNames.has(event.f)) throw new HistoryError(index, `f must be read, write or cas, got ${JSON.stringify(event.f)}`);
  if (!isProcessOrKey(event.key)) throw new HistoryError(index, `key must be a string or a finite number, got ${JSON.stringify(event.key)}`);
  if (event.time !== undefined && (typeof event.time !== 'number' || !Number.isFinite(event.time))) {
    throw new HistoryError(index, `time must be a finite number, got ${JSON.stringify(event.time)}`);
  }
}

function isProcessOrKey(value: unknown): value is string | number {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

function invokeInput(event: HistoryEvent, index: number): JsonValue {
  switch (event.f) {
    case 'read':
      return null;
    case 'write':
      if (event.value === undefined) throw new HistoryError(index, 'a write invoke must carry the value to write');
      return checkedJson(event.value, index);
    case 'cas':
      if (!Array.isArray(event.value) || event.value.length !== 2) {
        throw new HistoryError(index, 'a cas invoke must carry [expected, new]');
      }
      return checkedJson(event.value, index);
  }
}

function checkedJson(value: unknown, index: number): JsonValue {
  try {
    canonicalJson(value);
  } catch (err) {
    throw new HistoryError(index, (err as Error).message);
  }
  return value as JsonValue;
}

/** JSON text with object fields sorted, so equal values have equal text whatever their field order. */
function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new Error(`value ${value} is not JSON`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const record = value as Record<string, unknown>;
      const fields = Object.keys(record).sort();
      return `{${fields.map((field) => `${JSON.stringify(field)}:${canonicalJson(record[field])}`).join(',')}}`;
    }
    default:
      throw new Error(`value of type ${typeof value} is not JSON`);
  }
}

/** Converts and checks an event history. See `checkOperations`. */
export function checkHistory(events: readonly HistoryEvent[], options: CheckOptions = {}): CheckResult {
  return checkOperations(toOperations(events), options);
}

/** Checks paired operations, one key at a time. */
export function checkOperations(operations: readonly Operation[], options: CheckOptions = {}): CheckResult {
  const searchStepsMax = options.searchStepsMax ?? defaultSearchStepsMax;
  const byKey = new Map<RegisterKey, Operation[]>();
  for (const op of [...operations].sort((a, b) => a.invokeIndex - b.invokeIndex)) {
    if (!(op.returnIndex >= op.invokeIndex)) throw new Error(`operation returns (${op.returnIndex}) before it is invoked (${op.invokeIndex})`);
    let keyOps = byKey.get(op.key);
    if (keyOps === undefined) byKey.set(op.key, (keyOps = []));
    keyOps.push(op);
  }
  const perKey = new Map<RegisterKey, KeyCheckResult>();
  for (const [key, keyOps] of byKey) perKey.set(key, checkKey(key, keyOps, searchStepsMax));

  const results = [...perKey.values()];
  const failed = results.find((r) => r.verdict === 'violation') ?? results.find((r) => r.verdict === 'unknown');
  if (failed === undefined) return { ok: true, verdict: 'ok', perKey };
  return {
    ok: false,
    verdict: failed.verdict,
    perKey,
    failure: { key: failed.key, verdict: failed.verdict as 'violation' | 'unknown', explanation: failed.explanation! },
  };
}

/** Interns register values as small integers so model states compare and hash cheaply. */
class ValueTable {
  private readonly ids = new Map<string, number>();
  readonly values: JsonValue[] = [];
  constructor() {
    this.id(null); // id 0: absent, which reads as null
  }
  id(value: JsonValue): number {
    const text = canonicalJson(value);
    let id = this.ids.get(text);
    if (id === undefined) {
      id = this.values.length;
      this.ids.set(text, id);
      this.values.push(value);
    }
    return id;
  }
}

function checkKey(key: RegisterKey, keyOperations: readonly Operation[], searchStepsMax: number): KeyCheckResult {
  // An info read has no effect and no known output, so every linearization can include or omit it.
  const ops = keyOperations.filter((op) => !(op.f === 'read' && op.outcome === 'info'));
  const values = new ValueTable();
  const compiled = compile(ops, values);
  const outcome = searchLinearization(compiled, searchStepsMax);
  const base = { key, verdict: outcome.verdict, operationCount: ops.length, searchSteps: outcome.searchSteps };
  if (outcome.verdict === 'ok') return { ...base, linearization: outcome.linearization.map((i) => ops[i]) };
  return { ...base, explanation: explain(key, outcome, ops, compiled, values.values) };
}

/** The sequential register model as integers: what the search's inner loop works on. */
function compile(ops: readonly Operation[], values: ValueTable): CompiledOperations {
  const count = ops.length;
  const compiled = {
    count,
    kind: new Uint8Array(count),
    argA: new Int32Array(count),
    argB: new Int32Array(count),
    isInfo: new Uint8Array(count),
    invokePosition: new Float64Array(count),
    returnPosition: new Float64Array(count),
  };
  ops.forEach((op, i) => {
    compiled.isInfo[i] = op.outcome === 'info' ? 1 : 0;
    compiled.invokePosition[i] = op.invokeIndex;
    compiled.returnPosition[i] = op.returnIndex;
    if (op.f === 'read') {
      compiled.kind[i] = READ;
      compiled.argA[i] = values.id(op.output ?? null);
    } else if (op.f === 'write') {
      compiled.kind[i] = WRITE;
      compiled.argA[i] = values.id(op.input);
    } else {
      const [expected, replacement] = op.input as readonly [JsonValue, JsonValue];
      compiled.kind[i] = CAS;
      compiled.argA[i] = values.id(expected);
      compiled.argB[i] = values.id(replacement);
    }
  });
  return compiled;
}

function explain(
  key: RegisterKey,
  outcome: SearchOutcome,
  ops: readonly Operation[],
  compiled: CompiledOperations,
  values: readonly JsonValue[],
): Explanation {
  const prefix = outcome.longestPrefix;
  let state = 0;
  for (const op of prefix) state = applyOperation(compiled, op, state);
  const placed = new Set(prefix);
  const pendingOk = ops.map((_, i) => i).filter((i) => !placed.has(i) && ops[i].outcome === 'ok');
  // The ok operations that could come next in real time: invoked by the earliest pending return.
  const earliestReturnIndex = Math.min(...pendingOk.map((i) => ops[i].returnIndex));
  const unplaced = pendingOk.filter((i) => ops[i].invokeIndex <= earliestReturnIndex);
  const valueAfterPrefix = values[state];
  const okTotal = ops.filter((op) => op.outcome === 'ok').length;
  const okPlaced = prefix.filter((i) => ops[i].outcome === 'ok').length;
  const infoPlaced = prefix.length - okPlaced;
  const head = outcome.verdict === 'violation'
    ? `key ${JSON.stringify(key)} is not linearizable`
    : `key ${JSON.stringify(key)}: linearizability unknown, the search gave up after ${outcome.searchSteps} steps (searchStepsMax)`;
  const reasons = unplaced.map((i) => {
    const fits = applyOperation(compiled, i, state) !== REJECTED;
    return `${describeOperation(ops[i])}${fits ? '' : `, ${rejection(ops[i], valueAfterPrefix)}`}`;
  });
  const message = `${head}. The longest linearizable prefix found places ${okPlaced} of the key's ${okTotal} ok operations`
    + `${infoPlaced > 0 ? ` (and ${infoPlaced} info operations, taken to have taken effect)` : ''}, `
    + `leaving the register at ${JSON.stringify(valueAfterPrefix)}. `
    + (outcome.verdict === 'violation' ? 'No ok operation that could come next fits: ' : 'The ok operations that could come next: ')
    + `${reasons.join('; ')}.`;
  return {
    longestPrefix: prefix.map((i) => ops[i]),
    valueAfterPrefix,
    unplaced: unplaced.map((i) => ops[i]),
    message,
  };
}

/** For example: `process 2 read → 1 (events 4..7)`. */
export function describeOperation(op: Operation): string {
  const returned = op.outcome === 'info' ? 'info' : String(op.returnIndex);
  const events = `(events ${op.invokeIndex}..${returned})`;
  switch (op.f) {
    case 'read':
      return `process ${String(op.process)} read${op.outcome === 'ok' ? ` → ${JSON.stringify(op.output)}` : ''} ${events}`;
    case 'write':
      return `process ${String(op.process)} write ${JSON.stringify(op.input)} ${events}`;
    case 'cas': {
      const [expected, next] = op.input as readonly [JsonValue, JsonValue];
      return `process ${String(op.process)} cas ${JSON.stringify(expected)}→${JSON.stringify(next)} ${events}`;
    }
  }
}

function rejection(op: Operation, current: JsonValue): string {
  if (op.f === 'read') return `but the register holds ${JSON.stringify(current)}`;
  return `but the register holds ${JSON.stringify(current)}, not the expected ${JSON.stringify((op.input as readonly [JsonValue, JsonValue])[0])}`;
}
