/**
 * The simulated clock: discrete time units and a queue of actions due at a time. Nothing in the simulator
 * waits or reads a real clock; "later" means an entry in this queue. Actions due at the same time run in the
 * order they were scheduled (a sequence number breaks ties), so a run is a pure function of its seed.
 */
export class SimScheduler {
  private readonly times: number[] = [];
  private readonly seqs: number[] = [];
  private readonly actions: (() => void)[] = [];
  private seq = 0;
  private current = 0;
  /** How many actions have run: the "event" count the checkers run after. */
  executed = 0;
  /** A bound on the queue, so a runaway feedback loop fails loudly instead of eating the machine. */
  private readonly pendingMax: number;

  constructor(pendingMax = 1_000_000) {
    this.pendingMax = pendingMax;
  }

  get now(): number {
    return this.current;
  }

  get pending(): number {
    return this.times.length;
  }

  /** Runs `action` at `time` (not before now). */
  at(time: number, action: () => void): void {
    if (!(time >= this.current)) throw new Error(`scheduling at ${time}, before now (${this.current})`);
    if (this.times.length >= this.pendingMax) throw new Error(`more than ${this.pendingMax} pending simulator events`);
    this.push(time, this.seq++, action);
  }

  after(delay: number, action: () => void): void {
    this.at(this.current + delay, action);
  }

  /** The time of the next action, or Infinity when none is pending. */
  nextTime(): number {
    return this.times.length === 0 ? Infinity : this.times[0]!;
  }

  /** Runs the next action (advancing the clock to its time); false when nothing is pending. */
  runNext(): boolean {
    if (this.times.length === 0) return false;
    const time = this.times[0]!;
    const action = this.actions[0]!;
    this.pop();
    this.current = time;
    this.executed++;
    action();
    return true;
  }

  /** Moves the clock forward without running anything (to the end of a phase with nothing due). */
  advanceTo(time: number): void {
    if (time < this.current) throw new Error(`clock moving back from ${this.current} to ${time}`);
    if (this.nextTime() < time) throw new Error(`advancing to ${time} past an action due at ${this.nextTime()}`);
    this.current = time;
  }

  // A binary min-heap on (time, seq), kept in three parallel arrays.

  private less(i: number, j: number): boolean {
    const ti = this.times[i]!;
    const tj = this.times[j]!;
    return ti < tj || (ti === tj && this.seqs[i]! < this.seqs[j]!);
  }

  private swap(i: number, j: number): void {
    // Element by element rather than by destructuring: this runs for every simulator event.
    const time = this.times[i]!;
    this.times[i] = this.times[j]!;
    this.times[j] = time;
    const seq = this.seqs[i]!;
    this.seqs[i] = this.seqs[j]!;
    this.seqs[j] = seq;
    const action = this.actions[i]!;
    this.actions[i] = this.actions[j]!;
    this.actions[j] = action;
  }

  private push(time: number, seq: number, action: () => void): void {
    this.times.push(time);
    this.seqs.push(seq);
    this.actions.push(action);
    let i = this.times.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private pop(): void {
    const last = this.times.length - 1;
    this.swap(0, last);
    this.times.pop();
    this.seqs.pop();
    this.actions.pop();
    let i = 0;
    const n = this.times.length;
    while (true) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < n && this.less(left, smallest)) smallest = left;
      if (right < n && this.less(right, smallest)) smallest = right;
      if (smallest === i) break;
      this.swap(i, smallest);
      i = smallest;
    }
  }
}
