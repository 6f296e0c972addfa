/**
 * The search at the heart of the linearizability checker, for one register: Wing & Gong's
 * backtracking search with Lowe's improvements (as in Knossos and Porcupine).
 *
 * Operations arrive compiled to integers (values interned by the caller, state 0 = absent) so the
 * inner loop does no allocation beyond cache entries. Pure and deterministic.
 *
 * The history is a doubly linked list of call and return entries in real-time order. The search
 * linearizes ("lifts") a call the sequential model accepts, removing its call and return entries,
 * and backtracks when the scan reaches a return entry: that operation must have taken effect by
 * then, and no remaining choice made it fit. Lifted entries keep their own links, so they are put
 * back in LIFO order in O(1) (dancing links).
 *
 * Info operations (outcome unknown) may take effect at any time after their invoke, or never. They
 * have no return entry and are optional, so the search succeeds once every ok operation is placed.
 * Left in the candidate list they would multiply the configurations by two each, forever, so the
 * search looks only for linearizations in a normal form, which exists whenever any does:
 * - An applied info operation is followed at once by a read or a cas, which observes its effect.
 *   One followed by a write (or by nothing) can be dropped from any linearization: the write
 *   overwrites it unseen.
 * - Identical info operations (same kind and values) are applied in invoke order. Where a
 *   linearization applies a later twin first, the earlier one (invoked before it) can stand in.
 * So an info operation is worth applying only while some operation that could observe its value
 * (a read of it, a cas expecting it) is still pending. One with no possible observer at all is left
 * out of the search (common when writes have unique values, as Jepsen advises); one whose
 * observers have all returned before the current point is skipped there.
 *
 * The cache prunes by dominance, not just equality: a configuration is pruned when one already
 * explored had the same state, the same ok operations linearized and a subset of the info
 * operations. Applying fewer optional operations leaves more choices (an info operation never
 * returns, so it never forces anything after it), so if the dominating configuration led nowhere,
 * neither does this one. Only configurations that end with an ok operation are cached and pruned:
 * one that ends with an info operation has fewer choices (no write may come next). Ok calls are
 * tried before info calls, so the first visit to each (ok set, state) tends to be the one with the
 * fewest info operations applied, which prunes the most.
 */

export const READ = 0;
export const WRITE = 1;
export const CAS = 2;
/** What `applyOperation` returns when the register model does not allow the operation. */
export const REJECTED = -1;

export interface CompiledOperations {
  readonly count: number;
  /** READ, WRITE or CAS. */
  readonly kind: Uint8Array;
  /** READ: the value id read; WRITE: the value id written; CAS: the expected value id. */
  readonly argA: Int32Array;
  /** CAS: the new value id. */
  readonly argB: Int32Array;
  /** 1 for an info operation: optional, never returns. */
  readonly isInfo: Uint8Array;
  /** Positions in the history's total order; calls sort before returns at the same position. */
  readonly invokePosition: Float64Array;
  /** Ignored for info operations. */
  readonly returnPosition: Float64Array;
}

export interface SearchOutcome {
  readonly verdict: 'ok' | 'violation' | 'unknown';
  readonly searchSteps: number;
  /** For ok: operation ids in a valid linearization order. */
  readonly linearization: readonly number[];
  /**
   * The explored prefix (operation ids, in order) with the most ok operations linearized, first
   * found. For a violation, no ok operation that could come next fits the model after it: had one
   * fitted, the search would have placed it (or a configuration dominating it) and found more.
   */
  readonly longestPrefix: readonly number[];
}

/** The state after `op`, or REJECTED. */
export function applyOperation(ops: CompiledOperations, op: number, state: number): number {
  switch (ops.kind[op]) {
    case READ:
      return state === ops.argA[op] ? state : REJECTED;
    case WRITE:
      return ops.argA[op];
    default:
      return state === ops.argA[op] ? ops.argB[op] : REJECTED;
  }
}

const NIL = -1;
/** Sentinels: the list of ok calls and all returns, and the list of info calls. */
const MAIN_HEAD = 0;
const INFO_HEAD = 1;
const OK_CALL = 0;
const RETURN = 1;
const INFO_CALL = 2;

/** Scrambles an integer into 32 bits (a murmur-style finalizer), for Zobrist-style set hashing. */
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

export function searchLinearization(ops: CompiledOperations, searchStepsMax: number): SearchOutcome {
  const opCount = ops.count;
  const isInfo = ops.isInfo;
  let okCount = 0;
  for (let i = 0; i < opCount; i++) if (isInfo[i] === 0) okCount++;

  const usefulUntil = observationDeadlines(ops);

  // Entries 0 and 1 are the sentinels; then calls and returns sorted by position, calls first at
  // equal positions so that operations that touch in time count as concurrent.
  const sorted: Array<{ readonly at: number; readonly kind: number; readonly op: number }> = [];
  for (let i = 0; i < opCount; i++) {
    if (isInfo[i] === 1 && usefulUntil[i] < ops.invokePosition[i]) continue; // nothing can observe it
    sorted.push({ at: ops.invokePosition[i], kind: isInfo[i] === 1 ? INFO_CALL : OK_CALL, op: i });
    if (isInfo[i] === 0) sorted.push({ at: ops.returnPosition[i], kind: RETURN, op: i });
  }
  sorted.sort((a, b) => a.at - b.at || Number(a.kind === RETURN) - Number(b.kind === RETURN) || a.op - b.op);
  const entryCount = sorted.length + 2;
  const next = new Int32Array(entryCount).fill(NIL);
  const prev = new Int32Array(entryCount).fill(NIL);
  const entryOp = new Int32Array(entryCount).fill(NIL);
  const entryKind = new Uint8Array(entryCount);
  const entryPosition = new Float64Array(entryCount);
  const returnEntryOf = new Int32Array(opCount).fill(NIL);
  let mainTail = MAIN_HEAD;
  let infoTail = INFO_HEAD;
  sorted.forEach((item, index) => {
    const e = index + 2;
    entryOp[e] = item.op;
    entryKind[e] = item.kind;
    entryPosition[e] = item.at;
    if (item.kind === RETURN) returnEntryOf[item.op] = e;
    if (item.kind === INFO_CALL) {
      next[infoTail] = e;
      prev[e] = infoTail;
      infoTail = e;
    } else {
      next[mainTail] = e;
      prev[e] = mainTail;
      mainTail = e;
    }
  });

  // Each info operation's nearest earlier identical twin, which must be applied before it.
  const twinBefore = new Int32Array(opCount).fill(NIL);
  const lastOfSignature = new Map<string, number>();
  for (const item of sorted) {
    if (item.kind !== INFO_CALL) continue;
    const signature = `${ops.kind[item.op]}:${ops.argA[item.op]}:${ops.argB[item.op]}`;
    twinBefore[item.op] = lastOfSignature.get(signature) ?? NIL;
    lastOfSignature.set(signature, item.op);
  }

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

  // The linearized set as a bitset, with a hash over its ok operations only, so configurations
  // that differ only in info operations meet in one cache bucket for the dominance check.
  const wordCount = Math.ceil(opCount / 32);
  const linearized = new Uint32Array(wordCount);
  const okMask = new Uint32Array(wordCount);
  const opHash = new Uint32Array(opCount);
  for (let i = 0; i < opCount; i++) {
    if (isInfo[i] === 0) {
      okMask[i >>> 5] |= 1 << (i & 31);
      opHash[i] = mix32(i);
    }
  }
  let okHash = 0;
  const isLinearized = (op: number): boolean => (linearized[op >>> 5] & (1 << (op & 31))) !== 0;
  const toggle = (op: number): void => {
    linearized[op >>> 5] ^= 1 << (op & 31);
    okHash = (okHash ^ opHash[op]) >>> 0;
  };
  /** seen ⊆ current, and whatever current has beyond seen is info operations. */
  const dominates = (seen: Uint32Array, current: Uint32Array): boolean => {
    for (let w = 0; w < wordCount; w++) {
      if ((seen[w] & ~current[w]) !== 0 || (current[w] & ~seen[w] & okMask[w]) !== 0) return false;
    }
    return true;
  };
  const cache = new Map<number, CacheEntry[]>();
  /** Records the current configuration unless an explored one dominates it; says whether it is new. */
  const remember = (state: number): boolean => {
    const hash = (okHash ^ mix32(state + 0x40000000)) >>> 0;
    const bucket = cache.get(hash);
    if (bucket === undefined) {
      cache.set(hash, [{ linearized: linearized.slice(), state }]);
      return true;
    }
    for (const seen of bucket) {
      if (seen.state === state && dominates(seen.linearized, linearized)) return false;
    }
    // Entries the new one dominates can prune nothing it cannot: drop them to keep buckets short.
    const kept = bucket.filter((seen) => !(seen.state === state && dominates(linearized, seen.linearized)));
    kept.push({ linearized: linearized.slice(), state });
    cache.set(hash, kept);
    return true;
  };

  // The search stack: each lifted call entry, with the state and info barrier from before it.
  const stackEntry = new Int32Array(opCount);
  const stackState = new Int32Array(opCount);
  const stackBarrier = new Float64Array(opCount);
  let depth = 0;
  let state = 0;
  let okRemaining = okCount;
  let steps = 0;
  let longestPrefix: number[] = [];
  let longestOkCount = 0;
  // In the info phase: the position of the first return entry; info calls up to it are candidates.
  let barrier = 0;

  const prefix = (): number[] => Array.from(stackEntry.subarray(0, depth), (e) => entryOp[e]);

  let verdict: SearchOutcome['verdict'];
  let entry = next[MAIN_HEAD];
  while (true) {
    if (okRemaining === 0) {
      verdict = 'ok';
      break;
    }
    if (steps >= searchStepsMax) {
      verdict = 'unknown';
      break;
    }
    // With ok operations left, the main scan meets a return entry before its list ends. The ok
    // calls before it are tried; then the info calls invoked before it.
    if (entry !== NIL && entryKind[entry] === RETURN) {
      barrier = entryPosition[entry];
      entry = next[INFO_HEAD];
    }
    if (entry !== NIL && (entryKind[entry] === OK_CALL || entryPosition[entry] <= barrier)) {
      const op = entryOp[entry];
      const outsideNormalForm = entryKind[entry] === INFO_CALL
        ? (twinBefore[op] !== NIL && !isLinearized(twinBefore[op])) || usefulUntil[op] < barrier
        : ops.kind[op] === WRITE && depth > 0 && isInfo[entryOp[stackEntry[depth - 1]]] === 1;
      if (outsideNormalForm) {
        entry = next[entry];
        continue;
      }
      steps++;
      const after = applyOperation(ops, op, state);
      if (after !== REJECTED) {
        toggle(op);
        if (isInfo[op] === 1 || remember(after)) {
          stackEntry[depth] = entry;
          stackState[depth] = state;
          stackBarrier[depth] = barrier;
          depth++;
          state = after;
          lift(entry);
          if (isInfo[op] === 0) {
            okRemaining--;
            if (okCount - okRemaining > longestOkCount) {
              longestOkCount = okCount - okRemaining;
              longestPrefix = prefix();
            }
          }
          entry = next[MAIN_HEAD];
          continue;
        }
        toggle(op); // explored before (or dominated): prune
      }
      entry = next[entry];
      continue;
    }
    // No candidate left: the earliest pending return cannot be met from here. Backtrack.
    steps++;
    if (depth === 0) {
      verdict = 'violation';
      break;
    }
    depth--;
    entry = stackEntry[depth];
    state = stackState[depth];
    barrier = stackBarrier[depth];
    const op = entryOp[entry];
    toggle(op);
    unlift(entry);
    if (isInfo[op] === 0) okRemaining++;
    entry = next[entry];
  }
  return { verdict, searchSteps: steps, linearization: verdict === 'ok' ? prefix() : [], longestPrefix };
}

/**
 * For each info operation, the latest return position of an operation that could observe the value
 * it leaves (a read of that value, or a cas expecting it; an info observer never returns, so
 * Infinity); -Infinity when there is none. Info observers that are themselves useless do not count,
 * so this iterates to a fixed point. Entries for ok operations are unused.
 */
function observationDeadlines(ops: CompiledOperations): Float64Array {
  const usefulUntil = new Float64Array(ops.count).fill(Infinity);
  const produced = (op: number): number => (ops.kind[op] === CAS ? ops.argB[op] : ops.argA[op]);
  let changed = true;
  while (changed) {
    changed = false;
    const lastObservation = new Map<number, number>();
    for (let i = 0; i < ops.count; i++) {
      if (ops.kind[i] === WRITE) continue;
      const info = ops.isInfo[i] === 1;
      if (info && usefulUntil[i] === -Infinity) continue;
      const until = info ? Infinity : ops.returnPosition[i];
      lastObservation.set(ops.argA[i], Math.max(lastObservation.get(ops.argA[i]) ?? -Infinity, until));
    }
    for (let i = 0; i < ops.count; i++) {
      if (ops.isInfo[i] === 0 || usefulUntil[i] === -Infinity) continue;
      const until = lastObservation.get(produced(i)) ?? -Infinity;
      usefulUntil[i] = until < ops.invokePosition[i] ? -Infinity : until;
      if (usefulUntil[i] === -Infinity) changed = true;
    }
  }
  return usefulUntil;
}
