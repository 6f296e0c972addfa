import { invariant } from '../errors/catalogue.js';
import { FollowerProgress, type FlowState } from './followerProgress.js';
import { followerLeaseTicks, masterLeaseTicks } from './lease.js';
import { LeaseGrants } from './leaseGrants.js';
import { MemoryJournal } from './memoryJournal.js';
import { hasJointQuorum, quorumMatchIndex, type JointConfiguration } from './quorum.js';
import { ReadIndexQueue, type PendingRead } from './readIndexQueue.js';
import type {
  AppendRequest,
  AppendResponse,
  ConfigurationPayload,
  Entry,
  EntryPayload,
  HardState,
  Message,
  PreVoteRequest,
  PreVoteResponse,
  Random,
  ReadIndexRequest,
  ReadLeaseGrant,
  ReadState,
  Ready,
  Role,
  Snapshot,
  SnapshotRequest,
  SoftState,
  VoteRequest,
  VoteResponse,
} from './types.js';

export interface CoreOptions {
  readonly id: string;
  /** Ticks without hearing from a master before a follower campaigns; randomised in [t, 2t) per election. */
  readonly electionTimeoutTicks: number;
  /** Ticks between a master's heartbeats (and retransmissions); well below the election timeout. */
  readonly heartbeatIntervalTicks: number;
  /** Most entries in one append message. */
  readonly appendEntriesMax: number;
  /**
   * Most bytes of entries (as `entryBytes` measures them) in one append message; an append always carries at least
   * one entry, whatever its size. Absent: only appendEntriesMax bounds a batch.
   */
  readonly appendBytesMax?: number;
  /** The size of an entry for appendBytesMax: the runtime's encoded size (the core never encodes). */
  readonly entryBytes?: (entry: Entry) => number;
  /** Most append messages in flight to one follower before the master waits for acknowledgements. */
  readonly inflightAppendsMax: number;
  /** Most entries appended but not yet committed; proposals beyond are refused (back-pressure). */
  readonly uncommittedEntriesMax: number;
  /** The bound on clock rates the read leases rest on (see lease.ts): one tick lasts within ±p% of any other's. */
  readonly clockDriftPercent: number;
  /** Most read-index requests a master holds unconfirmed; more are answered with null at once. */
  readonly readIndexPendingMax: number;
  /**
   * False for voting-only and non-eligible nodes: they never campaign — except a voting-only voter whose journal an
   * eligible candidate lacks, which may become a caretaker master that takes no proposals (see `catchUpFor`).
   */
  readonly canBeMaster: boolean;
  readonly random: Random;
  /** Test-only: breaks one rule on purpose, so the simulator can prove it would notice. Never set in production. */
  readonly injectedBug?: 'quorumIsHalf' | 'voteForStaleCandidate' | 'commitBeforeQuorum' | 'skippedTicksStopTheClock' | 'stickyOnlyAboveOwnTerm' | 'countOwnUnpersistedEntries' | 'reportUnsyncedMatch';
}

export interface RestoredState {
  readonly hardState: HardState;
  /** The latest durable snapshot, if the journal was ever compacted. */
  readonly snapshot?: Snapshot;
  /** The durable journal after the snapshot (from index 1 when there is none). */
  readonly entries: readonly Entry[];
  /** Index of the last entry the state machine has applied (it persists this with what it applied). */
  readonly appliedIndex: number;
}

export type ProposeOutcome =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly reason: 'notMaster' | 'overloaded' | 'configurationChangeInProgress'; readonly master: string | null };

/** A message as a handler writes it: the core fills in `from`. */
type Outgoing = Message extends unknown ? (Message extends infer M ? (M extends Message ? Omit<M, 'from'> : never) : never) : never;

/** What the master knows of one follower, for the cluster layer (liveness, in-sync set, publication). */
export interface FollowerState {
  /** How the master sends to it (followerProgress.ts), the next index it sends, and its appends with entries in flight. */
  readonly state: FlowState;
  readonly nextIndex: number;
  readonly inflight: number;
  readonly matchIndex: number;
  readonly appliedIndex: number;
  readonly silentTicks: number;
  /** Numbers the latest append the follower answered; 0 while it has not answered this master at all. */
  readonly ackSeq: number;
}

const emptyConfiguration: JointConfiguration = { current: new Set() };

/** The options' ranges and relations, checked once when a core is built: a bad one is a bug of whoever built it. */
function checkCoreOptions(options: CoreOptions): void {
  const positive = (name: string, value: number) => invariant(Number.isSafeInteger(value) && value >= 1, `CoreOptions.${name} must be a positive integer, got ${value}`);
  positive('electionTimeoutTicks', options.electionTimeoutTicks);
  positive('heartbeatIntervalTicks', options.heartbeatIntervalTicks);
  positive('appendEntriesMax', options.appendEntriesMax);
  positive('inflightAppendsMax', options.inflightAppendsMax);
  positive('uncommittedEntriesMax', options.uncommittedEntriesMax);
  positive('readIndexPendingMax', options.readIndexPendingMax);
  if (options.appendBytesMax !== undefined) positive('appendBytesMax', options.appendBytesMax);
  invariant(options.heartbeatIntervalTicks < options.electionTimeoutTicks, 'heartbeats must come faster than elections');
  invariant(
    Number.isFinite(options.clockDriftPercent) && options.clockDriftPercent >= 0 && options.clockDriftPercent < 100,
    `CoreOptions.clockDriftPercent must be in [0, 100), got ${options.clockDriftPercent}`,
  );
}

function toJoint(payload: ConfigurationPayload): JointConfiguration {
  return payload.next === undefined
    ? { current: new Set(payload.current) }
    : { current: new Set(payload.current), next: new Set(payload.next) };
}

/**
 * The coordination core: master election and the replicated journal, Raft-shaped, with pre-vote and check-quorum.
 * Pure and deterministic — messages and ticks in, a Ready out; time is ticks, randomness is the injected Random.
 *
 * The voting configuration in force is the one in the latest configuration entry of the journal, committed or
 * not (Raft thesis §4.1). A change goes through a joint configuration: while an entry {current, next} is the
 * latest, elections and commits need a quorum of both; once it commits, the master appends {current: next}.
 */
export class CoordinationCore {
  private term: number;
  private votedFor: string | null;
  private commitIndex: number;
  private appliedIndex: number;
  /** The journal in memory: the snapshot it starts after, the entries, and what the runtime has yet to persist. */
  private readonly journal: MemoryJournal;
  /** A snapshot received from the master and not yet reported in a Ready. */
  private snapshotToInstall: Snapshot | null = null;
  /** Non-voting members the master replicates to besides the voters (the cluster layer keeps this current). */
  private replicas: ReadonlySet<string> = new Set();
  private role: Role = 'follower';
  private master: string | null = null;

  private electionElapsedTicks = 0;
  private heartbeatElapsedTicks = 0;
  private storageFailing = false;
  private randomizedElectionTimeoutTicks = 0;
  private votesGranted = new Set<string>();
  private votesRejected = new Set<string>();
  private progress = new Map<string, FollowerProgress>();
  /**
   * Caretaker duty of a voter that cannot be master (voting-only): the candidates whose pre-vote it refused because
   * their journal was behind its own. Such a node may hold entries that no eligible voter has — for instance when
   * the master that wrote them was removed from the configuration, or stepped down and went away — and then no
   * eligible voter can ever win its vote: the cluster could never elect a master again (found by the simulator:
   * 3 nodes with one voting-only; seeds 273, 1047, 2101). So, like Elasticsearch's voting-only nodes, it campaigns
   * itself, becomes a caretaker master that refuses every proposal, commits its journal with the usual noop,
   * replicates it, and steps down as soon as one of these candidates (or every other voter) holds all of it.
   */
  private catchUpFor = new Set<string>();

  private configuration: JointConfiguration = emptyConfiguration;
  private configurationIndex = 0;

  /** This node's clock: ticks since it booted (leases and stickiness are measured on it). */
  private nowTick = 0;
  /** Random per incarnation: lease grants echo it, so none anchored on a previous incarnation's clock is taken. */
  private readonly clockEpoch: number;
  /**
   * Ticks since a master last reached us (an append or snapshot), or since boot, or since we were master: while
   * below the election timeout we grant no vote and do not campaign. Unlike `master`, nothing but time resets it
   * back up — the read leases depend on it (lease.ts, point 1).
   */
  private ticksSinceMasterContact = 0;
  /** The term of the master the fields below are about: they restart with every term. */
  private contactTerm = -1;
  /** The latest append from the current master: echoed in every acknowledgement. */
  private lastAppendSeq = 0;
  private lastAppendSentTick = 0;
  private lastAppendRecvTick = 0;
  /** The match index we last acknowledged in this term: what an applied-progress report repeats. */
  private lastAckedMatchIndex = 0;
  /**
   * The latest successful acknowledgement that left this node after its Ready was durable (advance): what an applied
   * report sent before the Ready that applies is durable repeats (applied()).
   */
  private durableAck: AppendResponse | null = null;
  /** A follower's read lease: valid while nowTick < leaseUntilTick and the term is still leaseTerm. */
  private leaseUntilTick = 0;
  private leaseTerm = -1;
  /** On a master: appends numbered in this term; the members that may hold leases; the grants made. */
  private appendSeq = 0;
  private termStartIndex = 0;
  private leaseHolders: ReadonlySet<string> = new Set();
  /** A lease goes only to a follower that has applied this much: whatever this master may have acknowledged. */
  private leaseAppliedIndexMin = 0;
  private readonly leaseGrants = new LeaseGrants();
  private readonly pendingReads: ReadIndexQueue;

  // What the next Ready reports.
  private messages: Message[] = [];
  private readStates: ReadState[] = [];
  private hardStateDirty = false;

  constructor(private readonly options: CoreOptions, restored: RestoredState) {
    checkCoreOptions(options);
    this.term = restored.hardState.term;
    this.votedFor = restored.hardState.votedFor;
    this.journal = new MemoryJournal(restored.snapshot, restored.entries);
    this.pendingReads = new ReadIndexQueue(options.readIndexPendingMax);
    invariant(restored.appliedIndex >= this.snapshot.index, 'the state machine is older than the snapshot');
    // What was committed was durable with the journal that holds it (one transaction): a commit index past the
    // journal's end is a damaged or hand-edited data directory, never something to clamp away.
    invariant(
      restored.hardState.commitIndex <= this.lastIndex(),
      `the restored commit index ${restored.hardState.commitIndex} is past the journal's end ${this.lastIndex()}: the data directory is damaged`,
    );
    this.commitIndex = restored.hardState.commitIndex;
    this.appliedIndex = restored.appliedIndex;
    invariant(this.appliedIndex <= this.lastIndex(), 'applied past the end of the journal');
    // Whatever was applied was committed.
    this.commitIndex = Math.max(this.commitIndex, this.appliedIndex);
    this.refreshConfiguration();
    this.resetElectionTimer();
    // 52 random bits: a safe integer, exact through msgpack and JSON.
    this.clockEpoch = options.random.nextInt(0x400_0000) * 0x400_0000 + options.random.nextInt(0x400_0000);
  }

  // ---------------------------------------------------------------- inputs

  /**
   * Creates the first voting configuration, once in a cluster's life. Every node bootstrapped with the same list
   * writes the identical entry (index 1, term 0), so they agree; the caller must never bootstrap two different
   * lists (issue: discovery guarantees it).
   */
  bootstrap(voters: readonly string[]): void {
    invariant(this.lastIndex() === 0 && this.snapshot.index === 0 && this.term === 0, 'bootstrap on a node that already has a journal');
    invariant(voters.length > 0, 'bootstrap with no voters');
    this.appendLocal([{ index: 1, term: 0, payload: { kind: 'configuration', current: [...voters].sort() } }]);
  }

  tick(): void {
    this.nowTick++;
    this.ticksSinceMasterContact++;
    if (this.role === 'master') this.tickMaster();
    else this.tickFollower();
  }

  /**
   * Ticks that passed while this node could not act (its process stopped, its event loop held up): the clock moves
   * on, so leases run out as with tick(), but no timeout counts them. The messages that arrived meanwhile are still
   * unread; timing out before reading them made a master that was only held up step down on check-quorum, and a
   * follower campaign against a live master. Not counting them only slows the counter lease.ts point 1 rests on (a
   * voter stays loyal longer), which is safe. Two things do count them: a master's heartbeat timer (it heartbeats
   * at its next tick) and the progress records, shifted so that a follower is not taken for stalled for the time
   * this node was not looking.
   */
  skipTicks(ticks: number): void {
    invariant(Number.isInteger(ticks) && ticks >= 0, `cannot skip ${ticks} ticks`);
    if (this.options.injectedBug !== 'skippedTicksStopTheClock') this.nowTick += ticks;
    if (this.role !== 'master') return;
    this.heartbeatElapsedTicks += ticks;
    for (const p of this.progress.values()) {
      p.progressTick += ticks;
      p.appliedProgressTick += ticks;
      p.lastResendTick += ticks;
    }
  }

  /**
   * Asks for a read index under `id`: answered in a later Ready's readStates. On the master, once a quorum has
   * acknowledged an append sent after this call (so it was master when the call came) and an entry of its term is
   * committed; elsewhere, by asking the master. Null when there is no master to ask, or it refused.
   */
  readIndex(id: string): void {
    if (this.role === 'master' && this.options.canBeMaster) return this.registerRead(id, this.options.id);
    if (this.role === 'follower' && this.master !== null) {
      this.send({ type: 'readIndexRequest', to: this.master, term: this.term, id });
      return;
    }
    this.readStates.push({ id, index: null });
  }

  /**
   * True while this node may serve a sequential read from its own state (see lease.ts): a follower holding a lease
   * of its current term, or a master holding the master lease that has applied the first entry of its term.
   */
  hasReadLease(): boolean {
    if (this.role === 'follower') return this.leaseTerm === this.term && this.nowTick < this.leaseUntilTick;
    if (this.role !== 'master' || !this.options.canBeMaster) return false;
    return this.nowTick < this.masterLeaseEndTick() && this.termAt(this.appliedIndex) === this.term;
  }

  /** On a master: the index of the first entry of its term (the noop); every write an earlier master acknowledged is below it. */
  masterTermStartIndex(): number {
    return this.role === 'master' ? this.termStartIndex : 0;
  }

  /** On a master: the members that may hold read leases (in sync and caught up: the cluster layer decides). */
  setLeaseHolders(ids: Iterable<string>, appliedIndexMin: number): void {
    this.leaseHolders = new Set(ids);
    this.leaseAppliedIndexMin = appliedIndexMin;
  }

  /**
   * On a master: the members whose lease may still run, with the applied index they last reported. A write may be
   * acknowledged only once each of them has applied it (lease.ts, point 4).
   */
  leasesInForce(): ReadonlyMap<string, { readonly appliedIndex: number }> {
    return this.leaseGrants.inForce(this.nowTick);
  }

  /** Appends a command for the state machine (`command`) or a cluster-state change (`cluster`, by the cluster layer). */
  propose(data: unknown, kind: 'command' | 'cluster' = 'command'): ProposeOutcome {
    if (this.role !== 'master') return { ok: false, reason: 'notMaster', master: this.master };
    if (!this.options.canBeMaster) return { ok: false, reason: 'notMaster', master: null }; // a caretaker
    if (this.lastIndex() - this.commitIndex >= this.options.uncommittedEntriesMax) {
      return { ok: false, reason: 'overloaded', master: this.master };
    }
    const index = this.appendAsMaster(kind === 'command' ? { kind, data } : { kind, change: data });
    return { ok: true, index, term: this.term };
  }

  /** Starts moving the voting configuration to `voters` (joint first, then final). One change at a time. */
  proposeConfiguration(voters: readonly string[]): ProposeOutcome {
    if (this.role !== 'master') return { ok: false, reason: 'notMaster', master: this.master };
    if (!this.options.canBeMaster) return { ok: false, reason: 'notMaster', master: null }; // a caretaker
    if (this.configuration.next !== undefined || this.configurationIndex > this.commitIndex) {
      return { ok: false, reason: 'configurationChangeInProgress', master: this.master };
    }
    const index = this.appendAsMaster({
      kind: 'configuration',
      current: [...this.configuration.current].sort(),
      next: [...voters].sort(),
    });
    return { ok: true, index, term: this.term };
  }

  step(message: Message): void {
    invariant(message.to === this.options.id, `message for ${message.to} delivered to ${this.options.id}`);
    // A read index is confirmed by the quorum round itself, whatever terms the asker and the answer carry.
    if (message.type === 'readIndexRequest') return this.onReadIndexRequest(message);
    if (message.type === 'readIndexResponse') {
      this.readStates.push({ id: message.id, index: message.index });
      return;
    }
    if (message.term > this.term) {
      if (message.type === 'preVoteRequest') {
        // A pre-vote carries the term the sender would campaign in; it changes nobody's term.
      } else if (message.type === 'preVoteResponse' && message.granted) {
        // A granted pre-vote echoes the proposed term.
      } else if (message.type === 'voteRequest' && this.ticksSinceMasterContact < this.options.electionTimeoutTicks) {
        // Check-quorum's other half: while we hear from a master, a disruptive candidate does not bump our term.
        // The read leases rely on it too (lease.ts, point 1).
        return;
      } else {
        this.becomeFollower(message.term, message.type === 'appendRequest' || message.type === 'snapshotRequest' ? message.from : null);
      }
    } else if (message.term < this.term) {
      // A stale master must learn the new term so that it steps down; everything else stale is dropped.
      if (message.type === 'appendRequest' || message.type === 'snapshotRequest') {
        this.sendAppendResponse(message.from, false, 0, this.lastIndex());
      } else if (message.type === 'preVoteRequest') {
        this.send({ type: 'preVoteResponse', to: message.from, term: this.term, granted: false });
      }
      return;
    }
    switch (message.type) {
      case 'preVoteRequest':
        return this.onPreVoteRequest(message);
      case 'preVoteResponse':
        return this.onPreVoteResponse(message);
      case 'voteRequest':
        return this.onVoteRequest(message);
      case 'voteResponse':
        return this.onVoteResponse(message);
      case 'appendRequest':
        return this.onAppendRequest(message);
      case 'appendResponse':
        return this.onAppendResponse(message);
      case 'snapshotRequest':
        return this.onSnapshotRequest(message);
    }
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    return (
      this.snapshotToInstall !== null ||
      this.hardStateDirty ||
      this.messages.length > 0 ||
      this.readStates.length > 0 ||
      this.journal.hasUnstable() ||
      Math.max(this.appliedIndex, this.snapshot.index) < this.commitIndex
    );
  }

  ready(): Ready {
    return {
      ...(this.snapshotToInstall !== null ? { snapshot: this.snapshotToInstall } : {}),
      ...(this.hardStateDirty ? { hardState: this.hardState() } : {}),
      entries: this.journal.unstable(),
      messages: [...this.messages],
      // After a snapshot install the state machine starts at the snapshot, whatever it had applied before.
      committed: this.journal.range(Math.max(this.appliedIndex, this.snapshot.index) + 1, this.commitIndex),
      readStates: [...this.readStates],
    };
  }

  /**
   * The runtime has written the last ready() — its snapshot installed, its committed entries applied — and may not
   * have synced it yet. Applies need no sync of their own (readyNeedsSync): they are committed, and a crash that
   * takes an apply back leaves the entry in the durable journal to apply again. So the applied index moves now, and
   * a master can acknowledge what it applied while the entries that came in the same Ready are still syncing.
   */
  applied(ready: Ready): readonly Message[] {
    if (ready.snapshot !== undefined) this.appliedIndex = Math.max(this.appliedIndex, ready.snapshot.index);
    if (ready.committed.length === 0) return [];
    this.appliedIndex = ready.committed[ready.committed.length - 1]!.index;
    // The master acknowledges writes once in-sync followers have applied them: tell it now, not at the next
    // heartbeat (which would add up to a heartbeat interval to every write).
    if (this.role !== 'follower' || this.master === null || this.contactTerm !== this.term || this.lastAppendSeq === 0) return [];
    if (this.options.injectedBug === 'reportUnsyncedMatch') {
      const { matchIndex, echoSeq, echoSentTick, recvTick } = this.currentAck();
      return [{ type: 'appendResponse', from: this.options.id, to: this.master, term: this.term, success: true, matchIndex, lastIndex: matchIndex, appliedIndex: this.appliedIndex, echoSeq, echoSentTick, recvTick, epoch: this.clockEpoch }];
    }
    // At once, before this Ready is durable, when it can repeat an acknowledgement that already left durable: then
    // it vouches for nothing this Ready wrote — its match index and echo are those of an answer the master has (or
    // will have, in order, before it) — and the applied index it adds may run ahead of the disk, which the lease
    // rules allow for (readyNeedsSync). The master takes it as an applied report only (the echo is not new), so
    // the window of appends in flight and the lease anchors stay with the durable answers. Otherwise the report
    // leaves with the next Ready, after this one is durable: it acknowledges entries too.
    const ack = this.durableAck;
    if (ack !== null && ack.to === this.master && ack.term === this.term) return [{ ...ack, appliedIndex: this.appliedIndex }];
    this.sendAppendResponse(this.master, true, this.lastAckedMatchIndex, this.lastIndex());
    return [];
  }

  /** What a successful acknowledgement sent now would say (mutation reportUnsyncedMatch reports it unsynced). */
  private currentAck(): { matchIndex: number; echoSeq: number; echoSentTick: number; recvTick: number } {
    return { matchIndex: this.lastAckedMatchIndex, echoSeq: this.lastAppendSeq, echoSentTick: this.lastAppendSentTick, recvTick: this.lastAppendRecvTick };
  }

  /**
   * Called once everything in the last ready() has been persisted (applied() first), sent and applied. Inputs may
   * have been stepped between ready() and this (the runtime goes on reading messages and taking proposals while a
   * Ready is fsynced): what they changed stays for the next Ready — a hard state that moved again, entries cut and
   * written anew, new messages.
   */
  advance(ready: Ready): void {
    if (ready.hardState !== undefined && sameHardState(ready.hardState, this.hardState())) this.hardStateDirty = false;
    for (const message of ready.messages) if (message.type === 'appendResponse' && message.success && message.echoSeq > 0) this.durableAck = message;
    this.messages = this.messages.slice(ready.messages.length);
    this.readStates = this.readStates.slice(ready.readStates.length);
    if (ready.snapshot !== undefined && this.snapshotToInstall === ready.snapshot) this.snapshotToInstall = null;
    // A snapshot received since this Ready was taken is still to be installed, and its install writes the journal
    // anew (the retained tail too): nothing this Ready wrote stays on the disk past it.
    const installPending = this.snapshotToInstall !== null;
    if (ready.entries.length > 0 && !installPending) {
      const last = ready.entries[ready.entries.length - 1]!;
      this.journal.stableThrough(last.index, last.term);
      // The master counts its own entries towards a quorum once they are durable (maybeCommit): now they may be.
      if (this.role === 'master') this.maybeCommit();
    }
  }

  /**
   * The state machine has made `data` durable as a snapshot of everything up to `index` (by default the applied
   * index): the journal up to it may go. The runtime drops the same entries from its storage after this returns.
   * An index below the applied one lets a runtime snapshot its state while it goes on applying, and keep the most
   * recent entries for followers that lag a little (they catch up from the journal rather than by a snapshot).
   */
  compact(data: unknown, index = this.appliedIndex): Snapshot {
    invariant(index <= this.appliedIndex, `compaction to ${index}, past the applied index ${this.appliedIndex}`);
    return this.journal.compact(index, data);
  }

  /** The snapshot the journal starts after (index 0 when the journal was never compacted). */
  latestSnapshot(): Snapshot {
    return this.snapshot;
  }

  /**
   * Discovery found `id`, a voter of our configuration, with no journal at all (it crashed before it could
   * bootstrap, and the others did): if we cannot be master ourselves, it may never get the first entries unless
   * we hand them over as a caretaker (see `catchUpFor`), since it does not know it is a voter and never asks.
   */
  noteVoterWithoutJournal(id: string): void {
    if (this.options.canBeMaster || this.lastIndex() === 0 || id === this.options.id) return;
    const voters = this.voters();
    if (!voters.has(id) || !voters.has(this.options.id)) return;
    if (this.master !== null && this.electionElapsedTicks < this.options.electionTimeoutTicks) return;
    this.catchUpFor.add(id);
  }

  /** Sets the non-voting members a master replicates to, besides the voters (from the applied cluster state). */
  setReplicas(ids: Iterable<string>): void {
    this.replicas = new Set([...ids].filter((id) => id !== this.options.id));
    if (this.role === 'master') this.syncProgress();
  }

  /** On a master, what it knows of each follower; empty elsewhere. */
  followerStates(): ReadonlyMap<string, FollowerState> {
    return this.progress;
  }

  /**
   * Master ticks the follower has lacked entries without its match index advancing, or lacked applied entries
   * without its applied index advancing (0 while it has and has applied everything). A follower that answers
   * heartbeats but cannot store entries (a full disk) or never receives them (a saturated link) is live but not
   * keeping up; so is one that stores the small journal writes but cannot apply them (a disk with a few pages
   * free): acknowledgements wait for in-sync members to apply, so the cluster layer takes it out of the in-sync
   * set on this. A follower that applies slowly but steadily never counts as stalled.
   */
  stalledTicks(id: string): number {
    const p = this.progress.get(id);
    if (p === undefined) return 0;
    const entries = p.matchIndex >= this.lastIndex() ? 0 : this.nowTick - p.progressTick;
    const applying = p.appliedIndex >= this.commitIndex ? 0 : this.nowTick - p.appliedProgressTick;
    return Math.max(entries, applying);
  }

  softState(): SoftState {
    return {
      role: this.role,
      master: this.master,
      term: this.term,
      commitIndex: this.commitIndex,
      lastIndex: this.lastIndex(),
      configuration: this.configuration,
    };
  }

  hardState(): HardState {
    return { term: this.term, votedFor: this.votedFor, commitIndex: this.commitIndex };
  }

  /** The voting configuration in force (joint while a change is under way): the simulator's quorum checks read it. */
  votingConfiguration(): JointConfiguration {
    return this.configuration;
  }

  /** The entry at `index`, for checks and for answering clients; undefined past the end or in the snapshot. */
  entryAt(index: number): Entry | undefined {
    return this.journal.entryAt(index);
  }

  // ---------------------------------------------------------------- journal

  lastIndex(): number {
    return this.journal.lastIndex();
  }

  /** The snapshot the journal starts after (index 0 when never compacted). */
  private get snapshot(): Snapshot {
    return this.journal.snapshot;
  }

  private lastTerm(): number {
    return this.journal.lastTerm();
  }

  /** The term of the entry at `index`; undefined past the end and below the snapshot (compacted away). */
  private termAt(index: number): number | undefined {
    return this.journal.termAt(index);
  }

  private isUpToDate(lastIndex: number, lastTerm: number): boolean {
    if (this.options.injectedBug === 'voteForStaleCandidate') return true;
    return lastTerm > this.lastTerm() || (lastTerm === this.lastTerm() && lastIndex >= this.lastIndex());
  }

  private appendLocal(entries: readonly Entry[]): void {
    for (const entry of entries) {
      this.journal.append(entry);
      if (entry.payload.kind === 'configuration') {
        this.configuration = toJoint(entry.payload);
        this.configurationIndex = entry.index;
        if (this.role === 'master') this.syncProgress();
      }
    }
  }

  /** A master tracks exactly the peers of the configuration in force, new ones starting from its last entry. */
  private syncProgress(): void {
    const peers = new Set(this.peers());
    for (const id of this.progress.keys()) if (!peers.has(id)) this.progress.delete(id);
    for (const id of peers) {
      if (!this.progress.has(id)) {
        this.progress.set(id, this.newProgress(this.lastIndex()));
      }
    }
  }

  private newProgress(nextIndex: number): FollowerProgress {
    return new FollowerProgress(nextIndex, this.nowTick, this.options.inflightAppendsMax);
  }

  private truncateFrom(index: number): void {
    invariant(index > this.commitIndex, `truncating committed entry ${index} (commit index ${this.commitIndex})`);
    this.journal.truncateFrom(index);
    if (this.configurationIndex >= index) this.refreshConfiguration();
  }

  private refreshConfiguration(): void {
    const latest = this.journal.latestConfiguration();
    this.configuration = latest !== null ? toJoint(latest.payload) : emptyConfiguration;
    this.configurationIndex = latest?.index ?? 0;
  }

  private voters(): Set<string> {
    return new Set([...this.configuration.current, ...(this.configuration.next ?? [])]);
  }

  private hasQuorumOf(votes: ReadonlySet<string>): boolean {
    if (this.options.injectedBug === 'quorumIsHalf') {
      const half = (c: ReadonlySet<string>) => [...c].filter((id) => votes.has(id)).length >= Math.max(1, Math.floor(c.size / 2));
      return half(this.configuration.current) && (this.configuration.next === undefined || half(this.configuration.next));
    }
    return hasJointQuorum(this.configuration, votes);
  }

  private isSoleVoter(): boolean {
    const voters = this.voters();
    return voters.size === 1 && voters.has(this.options.id);
  }

  /**
   * Set while this node cannot persist its journal (a full disk): it then never campaigns — unless it is the sole
   * voter, which has nobody else to take over — since it could not keep a master's journal (a node with a full
   * disk that won an election stepped down at once, and cost the cluster an election).
   */
  setStorageFailing(failing: boolean): void {
    this.storageFailing = failing;
  }

  private isPromotable(): boolean {
    if (this.storageFailing && !this.isSoleVoter()) return false;
    if (!this.options.canBeMaster && this.catchUpFor.size === 0) return false;
    return this.voters().has(this.options.id) || this.isLeavingVoter();
  }

  /**
   * True when our latest configuration entry, not yet committed, removed us, and we were a voter before it. We may
   * hold that entry alone (the master that wrote it, crashed before committing it): the remaining voters still
   * under the joint configuration need our vote and cannot get it — our journal is ahead of theirs — so we must
   * campaign ourselves, commit the change as master, then step down (found by the simulator: seed 163).
   */
  private isLeavingVoter(): boolean {
    if (this.configurationIndex <= this.commitIndex) return false;
    for (let index = this.configurationIndex - 1; index > this.snapshot.index; index--) {
      const payload = this.entryAt(index)!.payload;
      if (payload.kind === 'configuration') return [...payload.current, ...(payload.next ?? [])].includes(this.options.id);
    }
    const previous = this.snapshot.configuration;
    return [...previous.current, ...(previous.next ?? [])].includes(this.options.id);
  }

  // ---------------------------------------------------------------- roles

  private resetElectionTimer(): void {
    this.electionElapsedTicks = 0;
    this.randomizedElectionTimeoutTicks =
      this.options.electionTimeoutTicks + this.options.random.nextInt(this.options.electionTimeoutTicks);
  }

  private becomeFollower(term: number, master: string | null): void {
    if (term !== this.term) {
      this.term = term;
      this.votedFor = null;
      this.hardStateDirty = true;
    }
    if (this.role === 'master') {
      // Stepping down: leases granted in this reign run out by themselves (lease.ts); unconfirmed reads fail.
      for (const read of this.pendingReads.takeAll()) this.answerRead(read, null);
      this.leaseGrants.clear();
      this.ticksSinceMasterContact = 0;
    }
    this.role = 'follower';
    this.master = master;
    this.progress.clear();
    this.resetElectionTimer();
  }

  private becomePreCandidate(): void {
    this.role = 'preCandidate';
    if (this.askVoters('preVoteRequest', this.term + 1)) this.becomeCandidate();
  }

  private becomeCandidate(): void {
    this.role = 'candidate';
    this.term += 1;
    this.votedFor = this.options.id;
    this.hardStateDirty = true;
    if (this.askVoters('voteRequest', this.term)) this.becomeMaster();
  }

  /** Starts a (pre-)vote round: counts our own vote, asks every other voter; true when we alone are a quorum. */
  private askVoters(type: 'preVoteRequest' | 'voteRequest', term: number): boolean {
    this.master = null;
    this.votesGranted = new Set([this.options.id]);
    this.votesRejected = new Set();
    this.resetElectionTimer();
    if (this.hasQuorumOf(this.votesGranted)) return true;
    for (const id of this.voters()) {
      if (id === this.options.id) continue;
      this.send({ type, to: id, term, lastIndex: this.lastIndex(), lastTerm: this.lastTerm() } as Outgoing);
    }
    return false;
  }

  private becomeMaster(): void {
    invariant(this.role === 'candidate', 'only a candidate becomes master');
    this.role = 'master';
    this.master = this.options.id;
    this.heartbeatElapsedTicks = 0;
    this.electionElapsedTicks = 0;
    this.ticksSinceMasterContact = 0;
    this.appendSeq = 0;
    this.leaseGrants.clear();
    this.pendingReads.takeAll();
    this.progress.clear();
    for (const id of this.peers()) this.progress.set(id, this.newProgress(this.lastIndex() + 1));
    // Entries of earlier terms commit only once an entry of this term does (Raft §5.4.2).
    this.termStartIndex = this.appendAsMaster({ kind: 'noop' });
  }

  /** Everyone the master replicates to: the voters and the non-voting replicas. */
  private peers(): string[] {
    return [...new Set([...this.voters(), ...this.replicas])].filter((id) => id !== this.options.id).sort();
  }

  // ---------------------------------------------------------------- ticks

  private tickFollower(): void {
    this.electionElapsedTicks++;
    // The only voter needs nobody's vote and can disrupt nobody: campaigning at once spares a one-node cluster an
    // election timeout at every start.
    // Unless other members may still hold read leases from before a restart (lease.ts, point 1).
    const sticky = this.ticksSinceMasterContact < this.options.electionTimeoutTicks;
    if (this.master === null && this.role === 'follower' && this.isSoleVoter() && this.isPromotable() && (!sticky || this.replicas.size === 0)) {
      return this.becomePreCandidate();
    }
    if (this.electionElapsedTicks >= this.randomizedElectionTimeoutTicks && !sticky) {
      // A full timeout without a word from the master: it is no longer known. Without this, a node that does not
      // campaign (voting-only, or not in the configuration) kept the old master forever, and since the timer
      // restarts here, it took that master for live again during the first election timeout of every cycle —
      // refusing pre-votes and ignoring vote requests — so elections that needed its vote could stall for good
      // (found by the simulator: seeds 687, 1191, 1792 and 3080 do not converge without this line).
      this.master = null;
      this.resetElectionTimer();
      if (this.isPromotable()) this.becomePreCandidate();
    }
  }

  private tickMaster(): void {
    this.heartbeatElapsedTicks++;
    this.electionElapsedTicks++;
    this.ticksSinceMasterContact = 0;
    for (const p of this.progress.values()) {
      p.tick();
      if (p.matchIndex >= this.lastIndex()) p.progressTick = this.nowTick;
      if (p.appliedIndex >= this.commitIndex) p.appliedProgressTick = this.nowTick;
    }
    if (this.electionElapsedTicks >= this.options.electionTimeoutTicks) {
      this.electionElapsedTicks = 0;
      // Check-quorum: a master that has not heard from a quorum within an election timeout steps down, so a
      // minority side of a partition stops acting as master on its own.
      const active = new Set([this.options.id]);
      for (const [id, p] of this.progress) {
        if (p.recentlyActive) active.add(id);
        p.recentlyActive = false;
      }
      if (!this.hasQuorumOf(active)) {
        this.becomeFollower(this.term, null);
        return;
      }
    }
    if (this.heartbeatElapsedTicks >= this.options.heartbeatIntervalTicks) {
      this.heartbeatElapsedTicks = 0;
      for (const [id, p] of this.progress) this.heartbeat(id, p);
    }
  }

  /**
   * A heartbeat keeps the follower's election timer quiet and carries the commit index and its lease. With nothing
   * in flight it is a plain append (new entries, if any). With appends in flight it is an empty append at what the
   * follower acknowledged, and entries are resent only once the follower has shown no progress for
   * resendDelayTicks: resending every unanswered append at every heartbeat multiplied the traffic on a link
   * slower than one append per heartbeat, until heartbeats queued behind resends and the master lost its
   * followers (found by the chaos harness's slow-link scenario: one 0.9 MB write at 10 Mbit/s made the master send
   * 13 MB and lose its leadership).
   */
  private heartbeat(id: string, p: FollowerProgress): void {
    // A snapshot on its way: an empty append at it, or the snapshot again once it has taken an election timeout.
    if (p.state === 'snapshot') return this.sendSnapshot(id, p, true);
    if (p.inflight === 0 || p.nextIndex <= this.snapshot.index) return this.sendAppend(id, true);
    if (this.nowTick - Math.max(p.progressTick, p.lastResendTick) >= this.resendDelayTicks(p)) {
      // Appends may have been dropped: resend what is not acknowledged (see resendFromIndex).
      this.restartFrom(p, Math.max(p.matchIndex + 1, Math.min(p.resendFromIndex, this.lastIndex() + 1)));
      p.resends++;
      p.lastResendTick = this.nowTick;
      this.sendAppend(id, true);
      return;
    }
    const matchTerm = this.termAt(p.matchIndex);
    if (matchTerm === undefined) return this.sendAppend(id, true);
    this.sendAppendRequest(id, p.matchIndex, matchTerm, []);
  }

  /** Forgets the appends in flight to a follower and sends again from `nextIndex`, probing (FollowerProgress.restartFrom). */
  private restartFrom(p: FollowerProgress, nextIndex: number): void {
    p.restartFrom(nextIndex, this.appendSeq + 1);
  }

  /** An election timeout, doubled by each resend without progress, up to 8 election timeouts. */
  private resendDelayTicks(p: FollowerProgress): number {
    return this.options.electionTimeoutTicks * 2 ** Math.min(p.resends, 3);
  }

  // ---------------------------------------------------------------- elections

  private onPreVoteRequest(m: PreVoteRequest): void {
    // Grant only if we would vote in a real election and have not heard from a live master recently: a node that
    // was cut off cannot disrupt a healthy cluster by bumping terms (Raft thesis §9.6).
    const masterIsLive = this.ticksSinceMasterContact < this.options.electionTimeoutTicks;
    const upToDate = this.isUpToDate(m.lastIndex, m.lastTerm);
    const granted = m.term > this.term && !masterIsLive && upToDate;
    if (!upToDate && m.term > this.term && !masterIsLive && !this.options.canBeMaster && this.voters().has(this.options.id)) {
      this.catchUpFor.add(m.from);
    }
    this.send({ type: 'preVoteResponse', to: m.from, term: granted ? m.term : this.term, granted });
  }

  private onPreVoteResponse(m: PreVoteResponse): void {
    if (this.role !== 'preCandidate') return;
    if (m.granted && m.term !== this.term + 1) return; // an answer to an older pre-vote round
    (m.granted ? this.votesGranted : this.votesRejected).add(m.from);
    if (this.hasQuorumOf(this.votesGranted)) this.becomeCandidate();
    else if (this.hasQuorumOf(this.votesRejected)) this.becomeFollower(this.term, null);
  }

  private onVoteRequest(m: VoteRequest): void {
    // lease.ts point 1, whatever moved us into the candidate's term: a delayed refusal or answer carrying it (we
    // may have heard from the old master a tick ago), stepping down as master, a restart with the term persisted
    // and no vote. step() only keeps a request of a higher term from moving us there; once there, the request of
    // that term arrives as a current one. Granting it elected a master while the old one still held its lease
    // (issue 13, item 2).
    const sticky = this.ticksSinceMasterContact < this.options.electionTimeoutTicks && this.options.injectedBug !== 'stickyOnlyAboveOwnTerm';
    const canVote = !sticky && (this.votedFor === null || this.votedFor === m.from);
    const granted = canVote && this.isUpToDate(m.lastIndex, m.lastTerm);
    if (granted) {
      this.votedFor = m.from;
      this.hardStateDirty = true;
      this.resetElectionTimer();
    }
    this.send({ type: 'voteResponse', to: m.from, term: this.term, granted });
  }

  private onVoteResponse(m: VoteResponse): void {
    if (this.role !== 'candidate') return;
    (m.granted ? this.votesGranted : this.votesRejected).add(m.from);
    if (this.hasQuorumOf(this.votesGranted)) this.becomeMaster();
    else if (this.hasQuorumOf(this.votesRejected)) this.becomeFollower(this.term, null);
  }

  // ---------------------------------------------------------------- replication

  private appendAsMaster(payload: EntryPayload): number {
    const index = this.lastIndex() + 1;
    this.appendLocal([{ index, term: this.term, payload }]);
    this.maybeCommit();
    for (const id of this.progress.keys()) this.sendAppend(id, false);
    return index;
  }

  /** Sends the entries a follower lacks, up to the batch and in-flight bounds; `always` sends even an empty one. */
  private sendAppend(to: string, always: boolean): void {
    const p = this.progress.get(to);
    if (p === undefined) return;
    if (p.nextIndex <= this.snapshot.index) return this.sendSnapshot(to, p, always);
    // Entries go only while the pipeline has room, even when the append must go (`always`: a commit notice, a
    // probe after a refusal): then it goes empty. A follower that does not answer (cut off, stopped) would
    // otherwise get one append per commit, all queued on its link and delivered at once when it returns.
    const hasRoom = p.windowHasRoom;
    const hasNew = p.nextIndex <= this.lastIndex();
    if (!always && (!hasNew || !hasRoom)) return;
    const prevIndex = p.nextIndex - 1;
    const prevTerm = this.termAt(prevIndex);
    invariant(prevTerm !== undefined, `no term at ${prevIndex} for ${to}`);
    const entries = hasRoom ? this.journal.batchFrom(prevIndex + 1, this.options.appendEntriesMax, this.options.appendBytesMax, this.options.entryBytes) : [];
    this.sendAppendRequest(to, prevIndex, prevTerm, entries);
    if (entries.length > 0) p.sentEntries(this.appendSeq, entries[entries.length - 1]!.index);
  }

  /**
   * The follower needs entries compacted away: send the snapshot — at most once per election timeout, since a
   * snapshot is large; in between, an empty append at the snapshot keeps the follower's election timer quiet.
   */
  private sendSnapshot(to: string, p: FollowerProgress, always: boolean): void {
    if (p.snapshotSentWithin(this.options.electionTimeoutTicks)) {
      if (always) this.sendAppendRequest(to, this.snapshot.index, this.snapshot.term, []);
      return;
    }
    p.sentSnapshot(this.snapshot.index);
    this.send({ type: 'snapshotRequest', to, term: this.term, snapshot: this.snapshot });
  }

  private sendAppendRequest(to: string, prevIndex: number, prevTerm: number, entries: readonly Entry[]): void {
    const lease = this.leaseGrantFor(to);
    this.send({
      type: 'appendRequest',
      to,
      term: this.term,
      prevIndex,
      prevTerm,
      entries,
      commitIndex: this.commitIndex,
      seq: ++this.appendSeq,
      sentTick: this.nowTick,
      ...(lease !== undefined ? { lease } : {}),
    });
  }

  /** The tick at which the master lease ends (lease.ts, point 2); at or below nowTick when it has run out. */
  private masterLeaseEndTick(): number {
    const start = quorumMatchIndex(this.configuration, (id) => (id === this.options.id ? this.nowTick : (this.progress.get(id)?.ackSentTick ?? Number.NEGATIVE_INFINITY)));
    return start + masterLeaseTicks(this.options.electionTimeoutTicks, this.options.clockDriftPercent);
  }

  /** A lease for `to` if it may hold one and the master lease leaves room (lease.ts, point 3); recorded for acks. */
  private leaseGrantFor(to: string): ReadLeaseGrant | undefined {
    const p = this.progress.get(to);
    // The applied index is checked here again, not only when the holders were chosen: an answer from a restarted
    // follower may have lowered it since.
    if (!this.leaseHolders.has(to) || p === undefined || p.ackSeq === 0 || p.appliedIndex < this.leaseAppliedIndexMin) return undefined;
    const masterLeaseEnd = this.masterLeaseEndTick();
    const ticks = followerLeaseTicks(masterLeaseEnd, p.ackTick, this.options.clockDriftPercent);
    if (ticks <= 0) return undefined;
    this.leaseGrants.record(to, masterLeaseEnd, p.appliedIndex);
    return { epoch: p.ackEpoch, anchorTick: p.ackRecvTick, ticks };
  }

  // ---------------------------------------------------------------- read index

  private onReadIndexRequest(m: ReadIndexRequest): void {
    if (this.role === 'master' && this.options.canBeMaster) return this.registerRead(m.id, m.from);
    this.send({ type: 'readIndexResponse', to: m.from, term: this.term, id: m.id, index: null });
  }

  private registerRead(id: string, from: string): void {
    const read: PendingRead = { id, from, minSeq: this.appendSeq + 1 };
    if (!this.pendingReads.add(read)) return this.answerRead(read, null);
    // A round of appends numbered from minSeq: a quorum answering it proves we were still master after the call.
    for (const peer of this.progress.keys()) this.sendAppend(peer, true);
    this.confirmReads();
  }

  /** Answers the reads a quorum has confirmed, once an entry of this term is committed (Raft thesis §6.4). */
  private confirmReads(): void {
    if (this.pendingReads.size === 0 || this.termAt(this.commitIndex) !== this.term) return;
    const confirmedSeq = quorumMatchIndex(this.configuration, (id) => (id === this.options.id ? Number.POSITIVE_INFINITY : (this.progress.get(id)?.ackSeq ?? 0)));
    for (const read of this.pendingReads.takeConfirmed(confirmedSeq)) this.answerRead(read, this.commitIndex);
  }

  private answerRead(read: PendingRead, index: number | null): void {
    if (read.from === this.options.id) this.readStates.push({ id: read.id, index });
    else this.send({ type: 'readIndexResponse', to: read.from, term: this.term, id: read.id, index });
  }

  private onSnapshotRequest(m: SnapshotRequest): void {
    invariant(this.role !== 'master', `two masters in term ${this.term}: ${this.options.id} and ${m.from}`);
    if (this.role !== 'follower') this.becomeFollower(this.term, m.from);
    this.master = m.from;
    this.electionElapsedTicks = 0;
    this.ticksSinceMasterContact = 0;
    this.noteContact();
    this.catchUpFor.clear();
    const snapshot = m.snapshot;
    // What we already know committed matches the master's journal (it holds every committed entry).
    if (snapshot.index <= this.commitIndex) return this.sendAppendResponse(m.from, true, this.commitIndex, this.lastIndex());
    this.journal.install(snapshot);
    this.snapshotToInstall = snapshot;
    this.commitIndex = snapshot.index;
    this.hardStateDirty = true;
    this.refreshConfiguration();
    this.sendAppendResponse(m.from, true, snapshot.index, this.lastIndex());
  }

  /** The master of this term reached us: what we know of an earlier master's appends no longer applies. */
  private noteContact(): void {
    if (this.contactTerm === this.term) return;
    this.contactTerm = this.term;
    this.lastAppendSeq = 0;
    this.lastAppendSentTick = 0;
    this.lastAppendRecvTick = 0;
    this.lastAckedMatchIndex = 0;
  }

  private sendAppendResponse(to: string, success: boolean, matchIndex: number, lastIndex: number): void {
    if (success && to === this.master && this.contactTerm === this.term) this.lastAckedMatchIndex = Math.max(this.lastAckedMatchIndex, matchIndex);
    // The echo speaks of the master of contactTerm, and the answer carries our current term: once the term has moved
    // on, echoing it would hand the master of the current term another master's numbering. A refusal of a delayed
    // append from an earlier term did exactly that (simulator seed 418 with the stragglers of issue 13): the master
    // of term 5, restarted since it was master of term 3, took the echoed send tick 251 of its earlier incarnation
    // for one of its own (its clock at 47) and held a lease long after a new master was elected; a read index could
    // be confirmed by such an echo too.
    const echo = this.contactTerm === this.term;
    this.send({
      type: 'appendResponse',
      to,
      term: this.term,
      success,
      matchIndex,
      lastIndex,
      appliedIndex: this.appliedIndex,
      echoSeq: echo ? this.lastAppendSeq : 0,
      echoSentTick: echo ? this.lastAppendSentTick : 0,
      recvTick: echo ? this.lastAppendRecvTick : 0,
      epoch: this.clockEpoch,
    });
  }

  private onAppendRequest(m: AppendRequest): void {
    invariant(this.role !== 'master', `two masters in term ${this.term}: ${this.options.id} and ${m.from}`);
    if (this.role !== 'follower') this.becomeFollower(this.term, m.from);
    this.master = m.from;
    this.electionElapsedTicks = 0;
    this.ticksSinceMasterContact = 0;
    this.catchUpFor.clear(); // there is a master: it brings the candidates up to date
    this.noteContact();
    if (m.seq > this.lastAppendSeq) {
      this.lastAppendSeq = m.seq;
      this.lastAppendSentTick = m.sentTick;
      this.lastAppendRecvTick = this.nowTick;
    }
    if (m.lease !== undefined && m.lease.epoch === this.clockEpoch && m.lease.anchorTick <= this.nowTick) {
      if (this.leaseTerm !== this.term) this.leaseUntilTick = 0;
      this.leaseTerm = this.term;
      this.leaseUntilTick = Math.max(this.leaseUntilTick, m.lease.anchorTick + m.lease.ticks);
    }
    // The hint is the highest index where our journal may still match the master's: below the rejected
    // prevIndex, and not past our end. The master resumes just after it, so a missing or conflicting suffix is
    // found however far the master's optimistic nextIndex had run ahead.
    const reject = () => this.sendAppendResponse(m.from, false, 0, Math.min(this.lastIndex(), m.prevIndex - 1));
    // Below our snapshot everything is committed and so matches: skip to what follows it.
    if (m.prevIndex < this.snapshot.index) {
      const skip = this.snapshot.index - m.prevIndex;
      if (skip > m.entries.length) return this.sendAppendResponse(m.from, true, this.commitIndex, this.lastIndex());
      return this.onAppendRequest({ ...m, prevIndex: this.snapshot.index, prevTerm: this.snapshot.term, entries: m.entries.slice(skip) });
    }
    if (m.prevIndex > this.lastIndex() || this.termAt(m.prevIndex) !== m.prevTerm) return reject();
    let firstNew = 0;
    for (; firstNew < m.entries.length; firstNew++) {
      const entry = m.entries[firstNew]!;
      const existing = this.termAt(entry.index);
      if (existing === undefined) break;
      if (existing !== entry.term) {
        this.truncateFrom(entry.index);
        break;
      }
    }
    this.appendLocal(m.entries.slice(firstNew));
    const lastNewIndex = m.prevIndex + m.entries.length;
    // Only what is known to match the master may be committed here: entries past lastNewIndex may be stale.
    const commit = Math.min(m.commitIndex, lastNewIndex);
    if (commit > this.commitIndex) {
      this.commitIndex = commit;
      this.hardStateDirty = true;
    }
    this.sendAppendResponse(m.from, true, lastNewIndex, this.lastIndex());
  }

  private onAppendResponse(m: AppendResponse): void {
    if (this.role !== 'master') return;
    const p = this.progress.get(m.from);
    if (p === undefined) return;
    p.recentlyActive = true;
    p.silentTicks = 0;
    // An answer to an append not answered before: a report of applied progress repeats an echo already seen.
    const firstAnswer = m.echoSeq > p.ackSeq;
    if (firstAnswer && m.epoch !== p.appliedEpoch) {
      // A new process of the follower (or its first answer): its report stands, lower than an earlier one's or not.
      // Keeping the highest ever reported granted a lease to a follower that had lost applies in a crash (simulator
      // seed 36 once apply-only Readys were no longer fsynced).
      p.appliedEpoch = m.epoch;
      p.appliedIndex = m.appliedIndex;
      p.appliedProgressTick = this.nowTick;
    } else if (m.epoch === p.appliedEpoch && m.appliedIndex > p.appliedIndex) {
      p.appliedIndex = m.appliedIndex;
      p.appliedProgressTick = this.nowTick;
    }
    this.leaseGrants.noteApplied(m.from, p.appliedIndex);
    if (firstAnswer) {
      p.ackSeq = m.echoSeq;
      p.ackSentTick = m.echoSentTick;
      p.ackTick = this.nowTick;
      p.ackRecvTick = m.recvTick;
      p.ackEpoch = m.epoch;
      this.confirmReads();
    }
    if (m.success) {
      if (p.accepted(m.echoSeq, m.matchIndex, this.snapshot.index)) {
        p.progressTick = this.nowTick;
        p.resends = 0;
        p.resendFromIndex = m.matchIndex + 1;
        this.maybeCommit();
        // A caretaker waits for a member to catch up, which need not move the commit index.
        if (this.role === 'master') this.maybeEndCaretaking();
      }
      p.pipelineIfMatched(m.matchIndex);
    } else {
      if (m.echoSeq < p.staleBelowSeq) return;
      // Back up to just past what the follower has (or one before what we tried), never below what it matched.
      this.restartFrom(p, Math.max(p.matchIndex + 1, Math.min(p.nextIndex - 1, m.lastIndex + 1)));
      p.resendFromIndex = p.nextIndex;
    }
    // While a snapshot is on its way, a refusal only says the follower does not have it yet: wait for it.
    const awaitingSnapshot = p.nextIndex <= this.snapshot.index && p.state === 'snapshot';
    if (this.role === 'master' && !awaitingSnapshot) this.sendAppend(m.from, !m.success);
  }

  private maybeCommit(): void {
    const candidate = this.options.injectedBug === 'quorumIsHalf'
      ? this.halfMatchIndex()
      : this.options.injectedBug === 'commitBeforeQuorum'
        ? this.lastIndex()
        : quorumMatchIndex(this.configuration, (id) => (id === this.options.id ? this.ownMatchIndex() : (this.progress.get(id)?.matchIndex ?? 0)));
    if (candidate <= this.commitIndex || this.termAt(candidate) !== this.term) return;
    this.commitIndex = candidate;
    this.hardStateDirty = true;
    // Followers learn the new commit index at once rather than at the next heartbeat; one that has not answered
    // for two heartbeats learns it from the heartbeats (a notice per commit would only queue up on its link).
    for (const [id, p] of this.progress) {
      if (p.silentTicks <= 2 * this.options.heartbeatIntervalTicks) this.sendAppend(id, true);
    }
    this.confirmReads();
    this.onCommitted();
    if (this.role === 'master') this.maybeEndCaretaking();
  }

  /**
   * A caretaker (a master that cannot be master, see `catchUpFor`) steps down once its whole journal is committed
   * and a candidate it refused — or every other voter — holds all of it: that candidate's journal is now as up to
   * date as any, so it can win the next election.
   */
  private maybeEndCaretaking(): void {
    if (this.options.canBeMaster || this.commitIndex < this.lastIndex()) return;
    const caughtUp = (id: string) => (this.progress.get(id)?.matchIndex ?? 0) >= this.lastIndex();
    if ([...this.catchUpFor].some(caughtUp) || this.peers().every(caughtUp)) {
      this.catchUpFor.clear();
      this.becomeFollower(this.term, null);
    }
  }

  /**
   * What the master counts for itself towards a quorum: the entries it has made durable, not every entry it holds.
   * It sends appends while it persists the same entries (Raft thesis 10.2.1), so followers may acknowledge entries
   * that are still only in its memory; counting those would commit an entry a crash of the master and of one
   * follower could lose.
   */
  private ownMatchIndex(): number {
    return this.options.injectedBug === 'countOwnUnpersistedEntries' ? this.lastIndex() : this.journal.stableLastIndex();
  }

  private halfMatchIndex(): number {
    const indexes = [this.ownMatchIndex(), ...[...this.progress.values()].map((p) => p.matchIndex)].sort((a, b) => b - a);
    return indexes[Math.max(0, Math.floor(this.voters().size / 2) - 1)] ?? 0;
  }

  /** Finishes a configuration change once its joint entry is committed; steps down if no longer a voter. */
  private onCommitted(): void {
    if (this.configurationIndex > this.commitIndex) return;
    if (this.configuration.next !== undefined) {
      this.appendAsMaster({ kind: 'configuration', current: [...this.configuration.next].sort() });
    } else if (!this.configuration.current.has(this.options.id)) {
      this.becomeFollower(this.term, null);
    }
  }

  private send(message: Outgoing): void {
    this.messages.push({ ...message, from: this.options.id } as Message);
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.votedFor === b.votedFor && a.commitIndex === b.commitIndex;
}
