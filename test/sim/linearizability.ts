/**
 * Linearizability checker for a key-value register with read, write and compare-and-set.
 *
 * Pure and deterministic (no I/O, clock or ambient randomness) so that a simulator run replayed
 * from a seed yields the same verdict, and so the chaos harness can check recorded histories.
 *
 * Algorithm: Wing & Gong's backtracking search with Lowe's improvements, as in Knossos and
 * Porcupine. The history is a doubly linked list of call and return entries in real-time order;
 * the search linearizes ("lifts") a call whose operation the sequential model accepts, and
 * backtracks when it reaches a return entry whose operation it has not linearized. A cache of
 * (set of linearized operations, model state) prunes configurations already explored, which turns
 * the search from exponential in the history length into, in practice, exponential only in the
 * concurrency. The register for each key is independent of the others (a KV register is the
 * product of single registers), so by P-compositionality each key is checked on its own.
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
  /** The longest sequence of operations found that the register explains, in linearization order. */
  readonly longestPrefix: readonly Operation[];
  /** The register's value after that prefix (null for absent). */
  readonly valueAfterPrefix: JsonValue;
  /**
   * The operations that could come next after the prefix in real-time order (those invoked before
   * the earliest return of a pending ok operation). For a violation none of them fits the model.
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
  /** For `ok`: one valid linearization, a witness that can be replayed and checked. */
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

const READ = 0;
const WRITE = 1;
const CAS = 2;
const NIL = -1;
const HEAD = 0;
const REJECTED = -1;

/** Scrambles an integer into 32 bits (a splitmix-style finalizer), for Zobrist-style set hashing. */
function mix32(n: number): number {
  let h = Math.imul(n ^ 0x5bd1e995, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

interface CacheEntry {
  readonly linearized: Uint32Array;
  readonly state: number;
}

function checkKey(key: RegisterKey, keyOperations: readonly Operation[], searchStepsMax: number): KeyCheckResult {
  // An info read has no effect and no known output, so every linearization can include or omit it.
  const ops = keyOperations.filter((op) => !(op.f === 'read' && op.outcome === 'info'));
  const opCount = ops.length;

  // The sequential model, compiled to integers: kind, and the ids of its one or two values.
  const values = new ValueTable();
  const kind = new Uint8Array(opCount);
  const argA = new Int32Array(opCount);
  const argB = new Int32Array(opCount);
  const isInfo = new Uint8Array(opCount);
  let okCount = 0;
  for (let i = 0; i < opCount; i++) {
    const op = ops[i];
    isInfo[i] = op.outcome === 'info' ? 1 : 0;
    if (op.outcome === 'ok') okCount++;
    if (op.f === 'read') {
      kind[i] = READ;
      argA[i] = values.id(op.output ?? null);
    } else if (op.f === 'write') {
      kind[i] = WRITE;
      argA[i] = values.id(op.input);
    } else {
      const [expected, next] = op.input as readonly [JsonValue, JsonValue];
      kind[i] = CAS;
      argA[i] = values.id(expected);
      argB[i] = values.id(next);
    }
  }
  /** The state after applying op to state, or REJECTED if the model does not allow it. */
  const step = (op: number, state: number): number => {
    switch (kind[op]) {
      case READ:
        return state === argA[op] ? state : REJECTED;
      case WRITE:
        return argA[op];
      default:
        return state === argA[op] ? argB[op] : REJECTED;
    }
  };

  // The entry list: 0 is the head sentinel, then one call entry per operation and one return entry
  // per ok operation (info operations never return), in real-time order.
  const positions: Array<{ readonly at: number; readonly isCall: boolean; readonly op: number }> = [];
  for (let i = 0; i < opCount; i++) {
    positions.push({ at: ops[i].invokeIndex, isCall: true, op: i });
    if (isInfo[i] === 0) positions.push({ at: ops[i].returnIndex, isCall: false, op: i });
  }
  // Calls before returns at the same position: operations that touch in time are concurrent.
  positions.sort((a, b) => a.at - b.at || Number(b.isCall) - Number(a.isCall) || a.op - b.op);
  const entryCount = positions.length + 1;
  const next = new Int32Array(entryCount);
  const prev = new Int32Array(entryCount);
  const entryOp = new Int32Array(entryCount).fill(NIL);
  const entryIsCall = new Uint8Array(entryCount);
  const returnEntryOf = new Int32Array(opCount).fill(NIL);
  const callEntries: number[] = [];
  for (let e = 1; e < entryCount; e++) {
    const position = positions[e - 1];
    entryOp[e] = position.op;
    entryIsCall[e] = position.isCall ? 1 : 0;
    if (!position.isCall) returnEntryOf[position.op] = e;
    else callEntries.push(e);
  }
  for (let e = 0; e < entryCount; e++) {
    prev[e] = e - 1;
    next[e] = e + 1 < entryCount ? e + 1 : NIL;
  }

  // Dancing links: a lifted entry keeps its own prev/next so it can be put back in LIFO order.
  const unlink = (e: number): void => {
    next[prev[e]] = next[e];
    if (next[e] !== NIL) prev[next[e]] = prev[e];
  };
  const relink = (e: number): void => {
    next[prev[e]] = e;
    if (next[e] !== NIL) prev[next[e]] = e;
  };
  const lift = (callEntry: number): void => {
    unlink(callEntry);
    const ret = returnEntryOf[entryOp[callEntry]];
    if (ret !== NIL) unlink(ret);
  };
  const unlift = (callEntry: number): void => {
    const ret = returnEntryOf[entryOp[callEntry]];
    if (ret !== NIL) relink(ret);
    relink(callEntry);
  };

  // The set of linearized operations, with an incrementally maintained hash of it.
  const linearized = new Uint32Array(Math.ceil(opCount / 32));
  const opHash = new Uint32Array(opCount);
  for (let i = 0; i < opCount; i++) opHash[i] = mix32(i);
  let linearizedHash = 0;
  const toggle = (op: number): void => {
    linearized[op >>> 5] ^= 1 << (op & 31);
    linearizedHash = (linearizedHash ^ opHash[op]) >>> 0;
  };
  const cache = new Map<number, CacheEntry[]>();
  /** Records (linearized, state) and says whether it was new. */
  const remember = (state: number): boolean => {
    const hash = (linearizedHash ^ mix32(state + 0x40000000)) >>> 0;
    let bucket = cache.get(hash);
    if (bucket === undefined) cache.set(hash, (bucket = []));
    for (const seen of bucket) {
      if (seen.state === state && sameWords(seen.linearized, linearized)) return false;
    }
    bucket.push({ linearized: linearized.slice(), state });
    return true;
  };

  // The search stack: each lifted call entry with the state before it.
  const stackEntry = new Int32Array(opCount);
  const stackState = new Int32Array(opCount);
  let depth = 0;
  let state = 0;
  let okRemaining = okCount;
  let steps = 0;
  let bestPrefix: number[] = [];

  let verdict: Verdict;
  let entry = next[HEAD];
  while (true) {
    if (okRemaining === 0) {
      verdict = 'ok';
      break;
    }
    if (steps >= searchStepsMax) {
      verdict = 'unknown';
      break;
    }
    steps++;
    // With ok operations left, the scan meets a return entry before the list ends.
    if (entryIsCall[entry] === 1) {
      const op = entryOp[entry];
      const after = step(op, state);
      if (after !== REJECTED) {
        toggle(op);
        if (remember(after)) {
          stackEntry[depth] = entry;
          stackState[depth] = state;
          depth++;
          state = after;
          lift(entry);
          if (isInfo[op] === 0) okRemaining--;
          if (depth > bestPrefix.length) bestPrefix = Array.from(stackEntry.subarray(0, depth), (e) => entryOp[e]);
          entry = next[HEAD];
          continue;
        }
        toggle(op); // explored before from here: prune
      }
      entry = next[entry];
    } else {
      // A pending operation must have taken effect by now, and nothing tried fits: backtrack.
      if (depth === 0) {
        verdict = 'violation';
        break;
      }
      depth--;
      entry = stackEntry[depth];
      state = stackState[depth];
      const op = entryOp[entry];
      toggle(op);
      unlift(entry);
      if (isInfo[op] === 0) okRemaining++;
      entry = next[entry];
    }
  }

  const base = { key, verdict, operationCount: opCount, searchSteps: steps };
  if (verdict === 'ok') {
    return { ...base, linearization: Array.from(stackEntry.subarray(0, depth), (e) => ops[entryOp[e]]) };
  }
  return { ...base, explanation: explain(key, verdict, ops, bestPrefix, step, values.values, steps) };
}

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function explain(
  key: RegisterKey,
  verdict: 'violation' | 'unknown',
  ops: readonly Operation[],
  prefix: readonly number[],
  step: (op: number, state: number) => number,
  values: readonly JsonValue[],
  steps: number,
): Explanation {
  let state = 0;
  for (const op of prefix) state = step(op, state);
  const placed = new Set(prefix);
  let earliestReturnIndex = Infinity;
  for (let i = 0; i < ops.length; i++) {
    if (!placed.has(i) && ops[i].outcome === 'ok') earliestReturnIndex = Math.min(earliestReturnIndex, ops[i].returnIndex);
  }
  const unplaced: number[] = [];
  for (let i = 0; i < ops.length; i++) {
    if (!placed.has(i) && ops[i].invokeIndex <= earliestReturnIndex) unplaced.push(i);
  }
  const valueAfterPrefix = values[state];
  const okTotal = ops.filter((op) => op.outcome === 'ok').length;
  const okPlaced = prefix.filter((i) => ops[i].outcome === 'ok').length;
  const head = verdict === 'violation'
    ? `key ${JSON.stringify(key)} is not linearizable`
    : `key ${JSON.stringify(key)}: search gave up after ${steps} steps (searchStepsMax)`;
  const reasons = unplaced.map((i) => `${describeOperation(ops[i])}${step(i, state) === REJECTED ? ` ${rejection(ops[i], valueAfterPrefix)}` : ''}`);
  const message = `${head}. The longest linearizable prefix found places ${prefix.length} operations (${okPlaced} of ${okTotal} ok), `
    + `leaving the register at ${JSON.stringify(valueAfterPrefix)}. `
    + (verdict === 'violation' ? 'None of the operations that could come next fits: ' : 'Operations that could come next: ')
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
  if (op.f === 'read') return `returned ${JSON.stringify(op.output)} but the register holds ${JSON.stringify(current)}`;
  const [expected] = op.input as readonly [JsonValue, JsonValue];
  return `expected ${JSON.stringify(expected)} but the register holds ${JSON.stringify(current)}`;
}
