/**
 * Generates histories that are linearizable by construction: clients run against one real
 * sequential key-value register, and each operation takes effect at a random instant between its
 * invoke and its completion (or, for an op whose outcome is reported unknown, at any later instant
 * or never). All choices come from `next`, so a fast-check array of numbers or a seeded generator
 * drives it deterministically, and fast-check can shrink a failing history.
 */
import type { HistoryEvent, OperationName, RegisterKey } from './linearizability.js';

export interface RegisterHistoryParams {
  readonly processCount: number;
  readonly keys: readonly RegisterKey[];
  /** Values written are 1..valueCount; cas may also expect null (absent). */
  readonly valueCount: number;
  /** Invokes stop after this many. */
  readonly operationCountMax: number;
  /** Scheduling steps; each invokes, advances one process, or lets an abandoned op take effect. */
  readonly stepCount: number;
  /** Chance, in percent, that a process gives up on an op before it takes effect (info or fail). */
  readonly abandonPercent: number;
  /** Chance, in percent, that an op that took effect is reported info instead of ok. */
  readonly infoPercent: number;
}

/** Returns an integer in [0, bound). */
export type NextInt = (bound: number) => number;

interface PendingOperation {
  readonly process: number;
  readonly f: OperationName;
  readonly key: RegisterKey;
  readonly value: number | [number | null, number];
  /** Set when the operation takes effect: what a read saw, whether a cas matched. */
  effect?: { readonly read: number | null; readonly casMatched: boolean };
}

export function generateRegisterHistory(next: NextInt, params: RegisterHistoryParams): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const register = new Map<RegisterKey, number>();
  const pending = new Map<number, PendingOperation>();
  // Operations reported info before taking effect: each may still take effect later, or never.
  const abandoned: PendingOperation[] = [];
  let invokedCount = 0;
  let time = 0;

  const emit = (op: PendingOperation, type: HistoryEvent['type'], value?: unknown): void => {
    events.push(value === undefined
      ? { process: op.process, type, f: op.f, key: op.key, time }
      : { process: op.process, type, f: op.f, key: op.key, value, time });
    time += next(3); // times tie sometimes: the checker must order by event position, not time
  };
  const takeEffect = (op: PendingOperation): void => {
    const current = register.get(op.key) ?? null;
    if (op.f === 'read') {
      op.effect = { read: current, casMatched: false };
    } else if (op.f === 'write') {
      register.set(op.key, op.value as number);
      op.effect = { read: null, casMatched: false };
    } else {
      const [expected, replacement] = op.value as [number | null, number];
      const matched = current === expected;
      if (matched) register.set(op.key, replacement);
      op.effect = { read: null, casMatched: matched };
    }
  };
  const complete = (op: PendingOperation): void => {
    pending.delete(op.process);
    const effect = op.effect!;
    if (next(100) < params.infoPercent) emit(op, 'info');
    else if (op.f === 'read') emit(op, 'ok', effect.read);
    else if (op.f === 'cas' && !effect.casMatched) emit(op, 'fail'); // no effect: Jepsen's fail
    else emit(op, 'ok');
  };
  const invoke = (process: number): void => {
    const f = (['read', 'write', 'cas'] as const)[next(3)];
    const key = params.keys[next(params.keys.length)];
    const expected = next(params.valueCount + 1);
    const value = f === 'cas' ? [expected === 0 ? null : expected, 1 + next(params.valueCount)] as [number | null, number] : 1 + next(params.valueCount);
    const op: PendingOperation = { process, f, key, value };
    pending.set(process, op);
    invokedCount++;
    emit(op, 'invoke', f === 'read' ? undefined : value);
  };

  for (let stepIndex = 0; stepIndex < params.stepCount; stepIndex++) {
    const actions: Array<() => void> = [];
    for (let process = 0; process < params.processCount; process++) {
      const op = pending.get(process);
      if (op === undefined) {
        if (invokedCount < params.operationCountMax) actions.push(() => invoke(process));
      } else if (op.effect === undefined) {
        actions.push(() => {
          if (next(100) >= params.abandonPercent) {
            takeEffect(op);
            return;
          }
          pending.delete(process);
          if (op.f === 'read' || next(2) === 0) {
            emit(op, 'fail');
          } else {
            emit(op, 'info');
            abandoned.push(op);
          }
        });
      } else {
        actions.push(() => complete(op));
      }
    }
    for (let i = 0; i < abandoned.length; i++) {
      actions.push(() => takeEffect(abandoned.splice(i, 1)[0]));
    }
    if (actions.length === 0) break;
    actions[next(actions.length)]();
  }
  // Finish what is in flight: an op that never completes is as good as info to the checker.
  for (const op of [...pending.values()]) {
    const ending = next(3);
    if (ending === 2) continue; // left without completion
    if (op.effect === undefined) takeEffect(op);
    if (ending === 0) complete(op);
    else {
      pending.delete(op.process);
      emit(op, 'info');
    }
  }
  return events;
}

/** Mulberry32: a small seeded generator for histories too long to draw from fast-check. */
export function seededNextInt(seed: number): NextInt {
  let a = seed >>> 0;
  return (bound) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * bound);
  };
}

/** Reads choices from a fast-check array of numbers; 0 once it runs out, so shrinking stays valid. */
export function arrayNextInt(choices: readonly number[]): NextInt {
  let cursor = 0;
  return (bound) => (cursor < choices.length ? choices[cursor++] % bound : 0);
}
