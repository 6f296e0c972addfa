import { invariant } from '../errors/catalogue.js';

/**
 * How the master sends to one follower (etcd's raft calls these probe, replicate and snapshot):
 * - `probing`: where the follower's journal matches is not known (a new master, a refusal, a resend) — one append
 *   with entries at a time. Appends pipelined past an unconfirmed point are refused, and their refusals pulled
 *   nextIndex back up: a follower whose journal conflicted ten entries back never converged (simulator seed
 *   96006769).
 * - `replicating`: the follower accepted an append reaching nextIndex — appends pipelined, up to the window.
 * - `snapshot`: the follower needs entries compacted away; a snapshot is on its way and no entries go until the
 *   follower acknowledges it (or the snapshot is sent again, at most once per election timeout).
 */
export type FlowState = 'probing' | 'replicating' | 'snapshot';

/**
 * What the master knows of one follower and how it sends to it. The flow state and the window of appends in flight
 * change only through the methods below, which keep one rule: `inflightSeqs` holds the seqs of the appends with
 * entries not answered yet, oldest first — the window's only count — and is empty while a snapshot is on its way.
 */
export class FollowerProgress {
  matchIndex = 0;
  nextIndex: number;
  private flow: FlowState = 'probing';
  private readonly inflightSeqs: number[] = [];
  /** Ticks since the snapshot on its way was sent (meaningful in the snapshot state only). */
  private snapshotTicks = 0;
  /**
   * The master's latest tick at which the follower showed progress: its match index advanced, or it had every
   * entry the master had (caught up). Resends and stalledTicks count from here.
   */
  progressTick: number;
  /** The master's tick of the latest resend (resends wait resendDelayTicks after progress or the previous one). */
  lastResendTick = Number.NEGATIVE_INFINITY;
  /** Resends since the follower last showed progress: each doubles the wait before the next (resendDelayTicks). */
  resends = 0;
  /**
   * Where a heartbeat resends from when appends may have been lost: just past what the follower acknowledged,
   * or, before it has answered at all, the first entry of this master's term — not index 1, which would resend
   * the whole journal to every follower after each election.
   */
  resendFromIndex: number;
  /**
   * A refusal answering an append sent before this seq is stale: since that append went out, the master has backed
   * up or resent from what it learnt later, and acting on it again would send the same entries once more. A
   * follower whose link held its messages (a blackholed route, a stopped process) answers a whole backlog of
   * appends at once; acting on every refusal in it sent a full batch per refusal (216 batches of 4,096 entries in
   * one turn held a master's event loop 1.4 s, and it lost its leadership: CRX scenario 8).
   */
  staleBelowSeq = 0;
  /** Heard from since the last check-quorum round. */
  recentlyActive = true;
  /**
   * The follower's applied index, as its current process reports it: the process of `appliedEpoch`. A new process
   * may report less than an earlier one did — a crash takes back applies that were not fsynced yet (readyNeedsSync,
   * src/node/readyLoop.ts) — and what it reports then stands.
   */
  appliedIndex = 0;
  appliedEpoch = 0;
  /**
   * The master's latest tick at which the follower showed applying progress: its reported applied index advanced,
   * or it had applied everything the master had committed. stalledTicks counts from here too.
   */
  appliedProgressTick: number;
  /** Master ticks since the follower last answered (0 for a follower this master has not had time to hear). */
  silentTicks = 0;
  /** From the acknowledgement of the latest append (highest seq) the follower answered: its seq and send tick, */
  ackSeq = 0;
  ackSentTick = Number.NEGATIVE_INFINITY;
  /** the master's tick when that acknowledgement arrived, and the follower's when the append had arrived there. */
  ackTick = 0;
  ackRecvTick = 0;
  /** The follower's epoch (its process incarnation) in that acknowledgement. */
  ackEpoch = 0;

  constructor(
    nextIndex: number,
    nowTick: number,
    private readonly inflightAppendsMax: number,
  ) {
    invariant(Number.isSafeInteger(nextIndex) && nextIndex >= 1, `a follower's next index is at least 1, not ${nextIndex}`);
    this.nextIndex = nextIndex;
    this.resendFromIndex = nextIndex;
    this.progressTick = nowTick;
    this.appliedProgressTick = nowTick;
  }

  get state(): FlowState {
    return this.flow;
  }

  /** Appends with entries sent and not answered yet. */
  get inflight(): number {
    return this.inflightSeqs.length;
  }

  /** Whether an append may carry entries now: never during a snapshot, one at a time while probing. */
  get windowHasRoom(): boolean {
    if (this.flow === 'snapshot') return false;
    return this.inflightSeqs.length < (this.flow === 'probing' ? 1 : this.inflightAppendsMax);
  }

  /** Whether a snapshot is on its way and was sent less than `ticks` ago (it is not sent again before). */
  snapshotSentWithin(ticks: number): boolean {
    return this.flow === 'snapshot' && this.snapshotTicks < ticks;
  }

  /** A master tick passed. */
  tick(): void {
    this.silentTicks++;
    if (this.flow === 'snapshot') this.snapshotTicks++;
  }

  /** An append with entries through `lastIndex`, numbered `seq`, went out. */
  sentEntries(seq: number, lastIndex: number): void {
    invariant(this.windowHasRoom, `entries sent to a follower ${this.flow} with ${this.inflightSeqs.length} appends in flight`);
    invariant(this.inflightSeqs.length === 0 || this.inflightSeqs[this.inflightSeqs.length - 1]! < seq, 'append seqs only grow');
    this.nextIndex = lastIndex + 1;
    this.inflightSeqs.push(seq);
  }

  /** A snapshot at `snapshotIndex` went out: no entries until the follower has it. */
  sentSnapshot(snapshotIndex: number): void {
    this.flow = 'snapshot';
    this.snapshotTicks = 0;
    this.nextIndex = snapshotIndex + 1;
    this.inflightSeqs.length = 0;
  }

  /**
   * Forgets the appends in flight and sends again from `nextIndex`, probing: refusals of what was sent before are
   * stale from `staleBelowSeq` on. A snapshot on its way stays on its way (a refusal then only says the follower does
   * not have it yet).
   */
  restartFrom(nextIndex: number, staleBelowSeq: number): void {
    this.nextIndex = nextIndex;
    this.inflightSeqs.length = 0;
    this.staleBelowSeq = staleBelowSeq;
    if (this.flow !== 'snapshot') this.flow = 'probing';
  }

  /**
   * The follower accepted the append numbered `echoSeq` and holds the journal through `matchIndex`: every append with
   * entries sent before it is answered (the transport keeps order; where it does not, a refusal later repairs the
   * count); a snapshot through `snapshotIndex` or beyond has arrived (probing, then, until pipelineIfMatched).
   * Answers whether the match index advanced.
   */
  accepted(echoSeq: number, matchIndex: number, snapshotIndex: number): boolean {
    if (this.flow === 'snapshot' && matchIndex >= snapshotIndex) this.flow = 'probing';
    let answered = 0;
    while (answered < this.inflightSeqs.length && this.inflightSeqs[answered]! <= echoSeq) answered++;
    if (answered > 0) this.inflightSeqs.splice(0, answered);
    const advanced = matchIndex > this.matchIndex;
    if (advanced) {
      this.matchIndex = matchIndex;
      this.nextIndex = Math.max(this.nextIndex, matchIndex + 1);
    }
    invariant(this.flow !== 'snapshot' || this.inflightSeqs.length === 0, 'no entries in flight while a snapshot is on its way');
    return advanced;
  }

  /**
   * After an accepted append has been acted on (commit, the appends that follow): if the follower's journal matches
   * up to everything sent (`matchIndex` reaches nextIndex), pipeline from here.
   */
  pipelineIfMatched(matchIndex: number): void {
    if (this.flow === 'probing' && matchIndex + 1 >= this.nextIndex) this.flow = 'replicating';
  }
}
