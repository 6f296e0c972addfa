import { ConclaveError } from '../errors/catalogue.js';

export interface LoginThrottleLimits {
  /** Failures from one (user, source) that cost nothing but the failure. */
  readonly loginFailuresFree: number;
  /** The wait after the first failure beyond the free ones; it doubles with each further failure. */
  readonly loginDelayMsMin: number;
  /** The longest wait; a record whose last failure is this old is forgotten. */
  readonly loginDelayMsMax: number;
  /** (user, source) records kept; the least recently failed goes first. */
  readonly loginFailureRecordsMax: number;
}

/** A name is the client's text: bounded in the key, so a record costs the same whatever was sent. */
const nameCharsInKey = 128;

/**
 * Failed password checks, per (user name, source address), with a growing wait between attempts once the free ones
 * are used up. Keyed by the source too, so that a flood of wrong passwords for `admin` from one address makes that
 * address wait and nobody else: `admin` keeps logging in from everywhere else. (A client behind the same address as
 * the flood waits too; credentials it has already used are served from the verified cache and never wait.)
 *
 * The wait is a refusal (RATE_LIMITED with Retry-After), not a sleep: a held request would cost a connection and
 * memory for as long as the attacker likes.
 */
export class LoginThrottle {
  private readonly records = new Map<string, { failures: number; lastFailureMs: number }>();

  constructor(
    private readonly limits: LoginThrottleLimits,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  private keyOf(name: string, source: string): string {
    return `${source}\u0000${name.slice(0, nameCharsInKey)}`;
  }

  /** How long, in ms, this (user, source) must still wait before its next attempt (0: it may try now). */
  waitMs(name: string, source: string): number {
    const key = this.keyOf(name, source);
    const record = this.records.get(key);
    if (record === undefined) return 0;
    const now = this.nowMs();
    if (now - record.lastFailureMs > this.limits.loginDelayMsMax) {
      this.records.delete(key);
      return 0;
    }
    // The last free failure already makes the next attempt wait: loginFailuresFree attempts cost nothing.
    const beyond = record.failures - this.limits.loginFailuresFree + 1;
    if (beyond <= 0) return 0;
    const delayMs = Math.min(this.limits.loginDelayMsMax, this.limits.loginDelayMsMin * 2 ** Math.min(beyond - 1, 40));
    return Math.max(0, record.lastFailureMs + delayMs - now);
  }

  /** Throws RATE_LIMITED while this (user, source) must wait. */
  admit(name: string, source: string): void {
    const waitMs = this.waitMs(name, source);
    if (waitMs > 0) {
      const retryAfterSeconds = Math.ceil(waitMs / 1000);
      throw new ConclaveError('RATE_LIMITED', `Too many failed logins for this user from your address; retry in ${retryAfterSeconds} s.`, { retryAfterSeconds });
    }
  }

  failed(name: string, source: string): void {
    const key = this.keyOf(name, source);
    const failures = (this.records.get(key)?.failures ?? 0) + 1;
    // Re-inserted, so the map's order is that of the last failure: the first entry is the one to forget.
    this.records.delete(key);
    if (this.records.size >= this.limits.loginFailureRecordsMax) this.records.delete(this.records.keys().next().value!);
    this.records.set(key, { failures, lastFailureMs: this.nowMs() });
  }

  succeeded(name: string, source: string): void {
    this.records.delete(this.keyOf(name, source));
  }

  get size(): number {
    return this.records.size;
  }
}
