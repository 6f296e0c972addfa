import type { Random } from '../../src/core/types.js';

/**
 * The simulator's only source of randomness: xoshiro128** (Blackman and Vigna), seeded through splitmix32.
 * Everything random in a run — cluster shape, latencies, drops, faults, the cores' election timeouts, the
 * clients' choices — comes from one seed, so a seed replays a run exactly. Math.random is never used.
 *
 * Implements the core's Random interface, so a core can be handed a stream of its own (see `fork`).
 */
export class SimRandom implements Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `seed`: any non-negative safe integer; both its low and high 32 bits matter. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative safe integer, got ${seed}`);
    let state = (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32) | 0, 0x85ebca6b);
    const next = () => {
      state = (state + 0x9e3779b9) | 0;
      return splitmix32(state);
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    // xoshiro's state must not be all zero; splitmix32 makes that practically impossible, but say why it cannot stay so.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The next 32 random bits, as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A float in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 2 ** 32;
  }

  /** An integer in [0, bound). The bias of multiply-and-floor is below 2^-24 for the bounds the simulator uses. */
  nextInt(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 2 ** 32) throw new Error(`nextInt bound must be an integer in [1, 2^32], got ${bound}`);
    return Math.floor(this.nextFloat() * bound);
  }

  /** An integer in [low, high], both included. */
  between(low: number, high: number): number {
    return low + this.nextInt(high - low + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.nextFloat() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.nextInt(items.length)]!;
  }

  /** Picks by weight: `choices` are [weight, value] pairs. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    const total = choices.reduce((sum, [w]) => sum + w, 0);
    let roll = this.nextFloat() * total;
    for (const [w, value] of choices) {
      if (roll < w) return value;
      roll -= w;
    }
    return choices[choices.length - 1]![1];
  }

  /** A shuffled copy (Fisher–Yates). */
  shuffled<T>(items: readonly T[]): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy;
  }

  /**
   * An independent stream, seeded from this one. Each core gets its own, so that how often one core draws (its
   * election timeouts) does not shift every later choice of the network and the faults.
   */
  fork(): SimRandom {
    return new SimRandom(this.nextUint32() * 2 ** 21 + (this.nextUint32() >>> 11));
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function splitmix32(a: number): number {
  let t = a ^ (a >>> 16);
  t = Math.imul(t, 0x21f0aaad);
  t ^= t >>> 15;
  t = Math.imul(t, 0x735a2d97);
  return (t ^ (t >>> 15)) >>> 0;
}
