import { ConclaveError } from '../errors/catalogue.js';

/**
 * Keys whose buckets are kept; the least recently used is forgotten first (and starts again full). Keys are names
 * of authenticated users, so this is only reached by a cluster with that many active users.
 */
const bucketsMax = 65_536;

/**
 * A token bucket per key (a user name): `perInterval` requests per `intervalMs` on average, in bursts of up to
 * `burst`. A request over the rate is refused with RATE_LIMITED and the seconds until a token is back, never held.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly rate: { readonly perInterval: number; readonly intervalMs: number; readonly burst: number; readonly what: string },
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  private tokensOf(key: string, now: number): number {
    const bucket = this.buckets.get(key);
    return bucket === undefined ? this.rate.burst : Math.min(this.rate.burst, bucket.tokens + (now - bucket.atMs) * (this.rate.perInterval / this.rate.intervalMs));
  }

  /** Throws RATE_LIMITED when `key` has no token left, without taking one (for budgets charged only on failure). */
  admit(key: string): void {
    this.refuseBelow(key, this.tokensOf(key, this.nowMs()));
  }

  /** Whether `key` has used any of its budget that has not come back yet. */
  used(key: string): boolean {
    return this.tokensOf(key, this.nowMs()) < this.rate.burst;
  }

  /** Takes one token for `key`, even the last; never throws (the charge for something already done). */
  charge(key: string): void {
    const now = this.nowMs();
    this.put(key, Math.max(0, this.tokensOf(key, now) - 1), now);
  }

  /**
   * Takes `count` tokens for `key` (one by default; at most the burst, which a full bucket always holds), or throws
   * RATE_LIMITED and takes none.
   */
  take(key: string, count = 1): void {
    count = Math.min(count, this.rate.burst);
    const now = this.nowMs();
    const tokens = this.tokensOf(key, now);
    this.refuseBelow(key, tokens, count);
    this.put(key, tokens - count, now);
  }

  private refuseBelow(key: string, tokens: number, count = 1): void {
    if (tokens < count) {
      const perMs = this.rate.perInterval / this.rate.intervalMs;
      const retryAfterSeconds = Math.max(1, Math.ceil((count - tokens) / perMs / 1000));
      throw new ConclaveError('RATE_LIMITED', `Too many ${this.rate.what} by ${key}; retry in ${retryAfterSeconds} s.`, { retryAfterSeconds });
    }
  }

  private put(key: string, tokens: number, now: number): void {
    this.buckets.delete(key);
    if (this.buckets.size >= bucketsMax) this.buckets.delete(this.buckets.keys().next().value!);
    this.buckets.set(key, { tokens, atMs: now });
  }
}
