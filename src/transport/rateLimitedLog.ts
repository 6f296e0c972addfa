/**
 * A log line that anyone on the network can provoke (a refused connection, a failed handshake) must not let them
 * fill the disk or drown the lines that matter. Each key (a refusal code, say) may log `linesPerWindowMax` lines per
 * window; the rest are counted, and the first line of a later window says how many were left out.
 */

export interface WarnLogger {
  warn(fields: object, message: string): void;
}

export interface RateLimitedLogOptions {
  readonly linesPerWindowMax: number;
  readonly windowMs: number;
  /** Distinct keys remembered; beyond, the oldest window is forgotten (keys are meant to be a few codes). */
  readonly keysMax?: number;
  /** Injected so tests can move time. */
  readonly now?: () => number;
}

interface KeyWindow {
  startedAtMs: number;
  lines: number;
  suppressed: number;
}

export class RateLimitedLog {
  private readonly windows = new Map<string, KeyWindow>();
  private readonly now: () => number;
  private readonly keysMax: number;

  constructor(private readonly log: WarnLogger, private readonly options: RateLimitedLogOptions) {
    if (!Number.isSafeInteger(options.linesPerWindowMax) || options.linesPerWindowMax < 1) throw new RangeError('linesPerWindowMax must be a positive integer');
    if (!Number.isSafeInteger(options.windowMs) || options.windowMs < 1) throw new RangeError('windowMs must be a positive integer');
    this.now = options.now ?? Date.now;
    this.keysMax = options.keysMax ?? 64;
  }

  /** Logs a warning unless `key` has used its lines for this window; true when it was logged. */
  warn(key: string, fields: object, message: string): boolean {
    const nowMs = this.now();
    let window = this.windows.get(key);
    if (window === undefined || nowMs - window.startedAtMs >= this.options.windowMs) {
      const suppressed = window?.suppressed ?? 0;
      if (window === undefined && this.windows.size >= this.keysMax) {
        const oldest = this.windows.keys().next().value;
        if (oldest !== undefined) this.windows.delete(oldest);
      }
      window = { startedAtMs: nowMs, lines: 0, suppressed: 0 };
      this.windows.delete(key);
      this.windows.set(key, window);
      if (suppressed > 0) {
        window.lines++;
        this.log.warn({ ...fields, suppressed }, `${message} (${suppressed} more like it since the last one were not logged)`);
        return true;
      }
    }
    if (window.lines >= this.options.linesPerWindowMax) {
      window.suppressed++;
      return false;
    }
    window.lines++;
    this.log.warn(fields, message);
    return true;
  }
}
