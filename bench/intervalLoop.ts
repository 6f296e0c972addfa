/**
 * The shape of the failover benches' write loops (bench/failover.ts over HTTP, bench/etcdFailover.ts over gRPC):
 * every `intervalMs`, one request to every target that has fewer than `inflightMax` unanswered, without waiting for
 * earlier answers — so a frozen target keeps getting requests too. Subclasses make the request and its record; this
 * keeps the records, the in-flight counts, the timer and the watchers of `first`.
 */
export abstract class IntervalLoop<R> {
  readonly records: R[] = [];
  private readonly inflight = new Map<string, number>();
  private readonly pending = new Set<Promise<void>>();
  private readonly watchers = new Set<{ match: (r: R) => boolean; resolve: (r: R) => void }>();
  private timer: NodeJS.Timeout | null = null;
  private seq = 0;

  constructor(
    targets: Iterable<string>,
    private readonly intervalMs: number,
    private readonly inflightMax: number,
  ) {
    for (const target of targets) this.inflight.set(target, 0);
  }

  /** Starts sending: a round now when `roundNow`, then one every interval. */
  start(roundNow = true): void {
    if (roundNow) this.round();
    this.timer = setInterval(() => this.round(), this.intervalMs);
  }

  /** Resolves with the first record (answered from now on) that `match` accepts. */
  first(match: (r: R) => boolean): Promise<R> {
    return new Promise((resolve) => this.watchers.add({ match, resolve }));
  }

  /** Stops sending and waits for every request in flight to be answered or given up. */
  async stopSending(): Promise<void> {
    this.halt();
    await Promise.allSettled([...this.pending]);
  }

  /** Stops the timer (requests in flight go on). */
  protected halt(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Sends request number `seq` to `target`: its record, and a promise settled (never rejected) once it is answered. */
  protected abstract send(target: string, seq: number): { record: R; answered: Promise<void> };

  private round(): void {
    for (const [target, count] of this.inflight) if (count < this.inflightMax) this.launch(target);
  }

  private launch(target: string): void {
    const { record, answered } = this.send(target, this.seq++);
    this.records.push(record);
    this.inflight.set(target, this.inflight.get(target)! + 1);
    const request = answered.finally(() => {
      this.inflight.set(target, this.inflight.get(target)! - 1);
      this.pending.delete(request);
      for (const watcher of this.watchers) {
        if (!watcher.match(record)) continue;
        this.watchers.delete(watcher);
        watcher.resolve(record);
      }
    });
    this.pending.add(request);
  }
}
