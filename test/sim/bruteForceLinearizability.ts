/**
 * Reference linearizability checker for small histories: obviously correct and exponential.
 *
 * It shares no code with the real checker (not even the pairing of events) so the two can be
 * compared: it tries every subset of the info operations (each may or may not have taken effect)
 * and every permutation of the chosen operations, keeps the permutations consistent with real-time
 * order, and replays each against one sequential key-value map (not key by key, so the real
 * checker's per-key decomposition is tested too). It assumes a well-formed history.
 */
import type { HistoryEvent } from './linearizability.js';

/** Beyond this the permutations get too many to try (8! is 40,320, times the info subsets). */
export const bruteForceOperationsMax = 8;

interface BruteOperation {
  readonly event: HistoryEvent;
  readonly invokeIndex: number;
  /** The completion, or undefined for info and for an invoke that never completed. */
  okEvent?: HistoryEvent;
  okIndex?: number;
  failed?: boolean;
}

export function bruteForceIsLinearizable(events: readonly HistoryEvent[]): boolean {
  const operations: BruteOperation[] = [];
  const open = new Map<HistoryEvent['process'], BruteOperation>();
  events.forEach((event, index) => {
    if (event.type === 'invoke') {
      const op: BruteOperation = { event, invokeIndex: index };
      operations.push(op);
      open.set(event.process, op);
      return;
    }
    const op = open.get(event.process)!;
    open.delete(event.process);
    if (event.type === 'ok') {
      op.okEvent = event;
      op.okIndex = index;
    }
    if (event.type === 'fail') op.failed = true;
  });
  const candidates = operations.filter((op) => !op.failed);
  if (candidates.length > bruteForceOperationsMax) {
    throw new Error(`brute force handles at most ${bruteForceOperationsMax} operations, got ${candidates.length}`);
  }
  const certain = candidates.filter((op) => op.okEvent !== undefined);
  const uncertain = candidates.filter((op) => op.okEvent === undefined);
  for (let mask = 0; mask < 1 << uncertain.length; mask++) {
    const chosen = [...certain, ...uncertain.filter((_, i) => (mask & (1 << i)) !== 0)];
    for (const order of permutations(chosen)) {
      if (respectsRealTime(order) && replays(order)) return true;
    }
  }
  return false;
}

function* permutations<T>(items: readonly T[]): Generator<T[]> {
  if (items.length === 0) {
    yield [];
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const tail of permutations(rest)) yield [items[i], ...tail];
  }
}

/** No operation may come after one that was invoked only after it returned. */
function respectsRealTime(order: readonly BruteOperation[]): boolean {
  for (let i = 0; i < order.length; i++) {
    for (let j = i + 1; j < order.length; j++) {
      const later = order[j];
      if (later.okIndex !== undefined && later.okIndex < order[i].invokeIndex) return false;
    }
  }
  return true;
}

/** JSON text with object fields sorted, so values compare by content. */
function jsonText(value: unknown): string {
  return JSON.stringify(value, (_field, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v);
}

function replays(order: readonly BruteOperation[]): boolean {
  const register = new Map<HistoryEvent['key'], string>();
  const current = (key: HistoryEvent['key']): string => register.get(key) ?? 'null';
  for (const op of order) {
    const { f, key, value } = op.event;
    if (f === 'read') {
      if (op.okEvent !== undefined && jsonText(op.okEvent.value) !== current(key)) return false;
    } else if (f === 'write') {
      register.set(key, jsonText(value));
    } else {
      const [expected, next] = value as [unknown, unknown];
      // A chosen cas took effect, so its comparison must have held; not taking effect is the
      // subset that leaves it out.
      if (jsonText(expected) !== current(key)) return false;
      register.set(key, jsonText(next));
    }
  }
  return true;
}
