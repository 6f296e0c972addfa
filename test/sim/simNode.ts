import type { BootstrapMethod } from '../../src/core/bootstrap.js';
import { coordinatorBugs, type ClusterCoordinator, type ClusterReady, type CoordinatorBug, type CoordinatorOptions } from '../../src/core/clusterCoordinator.js';
import type { ClusterMessage } from '../../src/core/clusterMessages.js';
import type { ClusterChange, NodeRoles } from '../../src/core/clusterState.js';
import type { CoordinationCore } from '../../src/core/coordinationCore.js';
import type { Entry, Snapshot } from '../../src/core/types.js';
import type { KvCommand, KvResult, KvSnapshot, KvValue } from './kvStateMachine.js';
import type { SimRandom } from './simRandom.js';
import type { SimScheduler } from './simScheduler.js';
import { Compaction } from '../../src/node/compaction.js';
import { ReadIndexBatcher } from '../../src/node/readIndexBatcher.js';
import { ReadyLoop, type ReadyLoopHooks, type ReadyStorage } from '../../src/node/readyLoop.js';
import { WriteQueue } from '../../src/node/writeQueue.js';
import { WriteTracker, type WriteOutcome, type RuntimeBug, type WriteTimers } from '../../src/node/writeTracker.js';
import { SimStorage, type PersistOutcome } from './simStorage.js';

/**
 * One simulated node: the real ClusterCoordinator (and the CoordinationCore inside it) driven by the runtime's own
 * Ready loop and write path (src/node/readyLoop.ts, src/node/writeTracker.ts), on a SimStorage disk, with a clock
 * of its own. After every input (a tick, a message, a proposal) the loop carries out each Ready:
 *
 *   commit (persist r.snapshot, r.hardState, r.entries and apply r.committed, atomically) → advance → send
 *   r.messages → settle the writes → answer the reads; compact when the journal is long
 *
 * The node can crash (the core and all memory are dropped; only the disk survives — optionally between a Ready's
 * commit and its messages, or right after a Ready), restart (a new core from the disk), pause (no ticks, no
 * processing; messages and client requests queue up) and resume (the queue is processed in arrival order). Its
 * disk can fill up: the loop handles a Ready the disk refuses as in production, with a new coordinator from the disk.
 */
export interface CoreTuning {
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  readonly appendEntriesMax: number;
  /** Bytes as `simEntryBytes` measures them (see CoreOptions.appendBytesMax); absent: count only. */
  readonly appendBytesMax?: number;
  readonly inflightAppendsMax: number;
  readonly uncommittedEntriesMax: number;
  readonly clockDriftPercent: number;
  readonly readIndexPendingMax: number;
}

/** The cluster layer's tuning (see CoordinatorOptions). */
export type CoordinatorTuning = Pick<
  CoordinatorOptions,
  | 'probeIntervalTicks'
  | 'discoveryInfoTicksMax'
  | 'discoveredPeersMax'
  | 'joinRetryTicks'
  | 'nodeFailureTimeoutTicks'
  | 'inSyncTimeoutTicks'
  | 'publishTimeoutTicks'
  | 'pendingChangesMax'
>;

export interface NodeConfig {
  readonly id: string;
  readonly roles: NodeRoles;
  readonly clusterName: string;
  readonly version: string;
  readonly bootstrap: BootstrapMethod;
  /** Every node's id: the simulated seed host list. */
  readonly discoveryPeers: readonly string[];
  readonly tuning: CoreTuning;
  readonly coordinatorTuning: CoordinatorTuning;
  /** When the node snapshots its state and compacts its journal (src/node/compaction.ts); null: never. */
  readonly compaction: SimCompaction | null;
  /** Each incarnation ticks every `tickPeriod` time units, drawn in [min, max]: clocks run at different rates. */
  readonly tickPeriodMin: number;
  readonly tickPeriodMax: number;
  /** How long a write waits for its answer before "unknown" (the runtime's replication.writeTimeoutMs). */
  readonly writeTimeoutUnits: number;
  /**
   * How long an fsync takes, at most (drawn per sync in [0, max]); its caller goes on meanwhile, as the runtime's
   * event loop does while WalSync runs. 0: every sync returns at once, inside the Ready (transcripts).
   */
  readonly syncDelayMax: number;
  readonly injectedBug?: CoordinatorBug | RuntimeBug;
}

/** A copy of the state machine once `entriesMin` are applied past the snapshot, compacted at `retainEntries` later. */
export interface SimCompaction {
  readonly entriesMin: number;
  readonly retainEntries: number;
}

/** A copy of the register state machine, made at once (production writes a file from a worker thread). */
interface SimStateCopy {
  readonly index: number;
  readonly data: KvSnapshot;
}

/** What the invariant checker hears from a node, synchronously, as things happen. */
export interface NodeObserver {
  onBoot(node: SimNode): void;
  onPersist(node: SimNode, outcome: PersistOutcome): void;
  /** Everything the node wrote is durable now. */
  onSynced(node: SimNode): void;
  /** The node crashes: what it wrote and did not sync is about to be lost. */
  onUnsyncedLost(node: SimNode): void;
  /** The node took a snapshot of its own state and compacted its journal below it. */
  onCompact(node: SimNode, snapshot: Snapshot): void;
  /** The core accepted a client proposal at `index`. */
  onProposalAccepted(node: SimNode, index: number): void;
  /** `commitIndex`: the core's commit index in the Ready that carried the entry. */
  onApply(node: SimNode, entry: Entry, commitIndex: number): void;
  /** The node, as master, acknowledged to a client the write it applied at `index`. */
  onAcknowledged(node: SimNode, index: number): void;
}

export interface NodeEnvironment {
  readonly scheduler: SimScheduler;
  /** The node forks a stream per incarnation from this (tick period, the core's election timeouts). */
  readonly random: SimRandom;
  send(message: ClusterMessage): void;
  readonly observer: NodeObserver;
  /** Null unless tracing: a line per notable event. */
  readonly trace: ((line: string) => void) | null;
}

/** What a client hears back for one request. The node calls `reply` synchronously; the client adds latency. */
export type ClientReply =
  /** Certainly not appended: the client may retry elsewhere. `unavailable`: the node is down (connection refused). */
  | {
      readonly kind: 'rejected';
      readonly reason: 'notMaster' | 'overloaded' | 'configurationChangeInProgress' | 'unavailable' | 'diskFull';
      readonly master: string | null;
    }
  /** `index`: the entry's index (a write, a log read), or the applied index a direct read was served at. */
  | { readonly kind: 'applied'; readonly result: KvResult; readonly index: number }
  /** The request may or may not take effect: the node crashed, or the entry was replaced or is still pending. */
  | { readonly kind: 'unknown'; readonly why: string };

/** Between a Ready's commit and the sending of its messages; or once the Ready is done (sent, writes settled). */
export type CrashPoint = 'beforeCommit' | 'afterCommit' | 'afterReady';
export type NodeStatus = 'running' | 'paused' | 'crashed';

type QueuedInput =
  | { readonly kind: 'message'; readonly message: ClusterMessage }
  | { readonly kind: 'request'; readonly command: KvCommand; readonly reply: (r: ClientReply) => void }
  /** Work the process deferred to after its current turn (setImmediate), due while it was paused. */
  | { readonly kind: 'deferred'; readonly run: () => void };

/** A direct read whose index the master confirmed, waiting for the state machine to reach it. */
interface WaitingRead {
  readonly key: string;
  readonly reply: (r: ClientReply) => void;
  readonly index: number;
}

/** The write queue's bounds: small, so that group commit and its refusals happen in short runs too. */
const simWriteQueueLimits = { entriesMax: 128, bytesMax: 64 * 1024, groupEntriesMax: 8, groupBytesMax: 4 * 1024 };

/** A paused node's receive buffer is bounded, as a socket's is: beyond it, messages are lost. */
const queuedInputsMax = 5_000;
/** Reads waiting for a read index whose answer was lost are dropped, oldest first, beyond this many. */
const waitingReadsMax = 64;

export class SimNode {
  readonly storage: SimStorage;
  /** The runtime's Ready loop, which owns the coordinator, while the process exists. */
  private loop: ReadyLoop<KvResult | null, string> | null = null;
  private currentStatus: NodeStatus = 'crashed';
  private queued: QueuedInput[] = [];
  /** The runtime's write path (src/node/writeTracker.ts), on this incarnation's simulated timers. */
  private writes: WriteTracker<KvResult | null, string> | null = null;
  private readonly waitingReads = new Map<string, WaitingRead>();
  /** The runtime's read batching (ReadIndexBatcher), while the process exists. */
  private reads: ReadIndexBatcher<'overloaded' | 'timeout' | 'notConfirmed'> | null = null;
  /** The runtime's write queue and group commit (WriteQueue), while the process exists. */
  private queue: WriteQueue<{ readonly command: KvCommand; readonly reply: (r: ClientReply) => void }> | null = null;
  /** The runtime's compaction schedule (Compaction), while the process exists; null when the node never compacts. */
  private compaction: Compaction<SimStateCopy> | null = null;
  private drainScheduled = false;
  private readSeq = 0;
  private missedTicks = 0;
  private incarnation = 0;
  private tickPeriodUnits = 0;
  /** Draws each fsync's duration (see NodeConfig.syncDelayMax). */
  private syncDelays: SimRandom | null = null;
  private crashArmed: CrashPoint | null = null;
  /**
   * Message-level transcripts: the node's clock stands still (its scheduled ticks pass unseen; tick() still ticks)
   * and its Readys wait for processReady().
   */
  private stepMode = false;
  /** Ticks since the last probe of a failing disk (the runtime's probeStorage, once per election timeout). */
  private ticksSinceStorageProbe = 0;
  readonly stats = { ticks: 0, messages: 0, crashes: 0, restarts: 0, pauses: 0, applied: 0, snapshotsInstalled: 0 };

  constructor(
    readonly config: NodeConfig,
    private readonly env: NodeEnvironment,
  ) {
    this.storage = new SimStorage({ appliedIndexApart: config.injectedBug === 'appliedIndexApart' });
    this.storage.syncListener = () => this.env.observer.onSynced(this);
  }

  get id(): string {
    return this.config.id;
  }

  /** The coordinator, while the process exists (running or paused); null while crashed. */
  get coordinator(): ClusterCoordinator | null {
    return this.loop?.coordinator ?? null;
  }

  /** The core inside the coordinator, while the process exists. */
  get core(): CoordinationCore | null {
    return this.loop?.coordinator.core ?? null;
  }

  /** Whether this node may ever take writes as master (not voting-only, master-eligible). */
  get canBeMaster(): boolean {
    return this.config.roles.masterEligible && !this.config.roles.votingOnly;
  }

  get status(): NodeStatus {
    return this.currentStatus;
  }

  get tickPeriod(): number {
    return this.tickPeriodUnits;
  }

  /** First start of an empty node: it discovers its peers, then bootstraps or joins. */
  start(): void {
    if (this.incarnation !== 0) throw new Error(`${this.id} started twice`);
    this.boot();
    this.drain();
  }

  get started(): boolean {
    return this.incarnation > 0;
  }

  tick(): void {
    if (this.currentStatus !== 'running') return;
    this.stats.ticks++;
    this.probeStorage();
    this.loop!.coordinator.tick();
    this.drain();
  }

  /** As the runtime's probeStorage: a probe write succeeds once the disk has space, and ends the failure. */
  private probeStorage(): void {
    const loop = this.loop!;
    if (loop.storageFailure === null || ++this.ticksSinceStorageProbe < this.config.tuning.electionTimeoutTicks) return;
    this.ticksSinceStorageProbe = 0;
    if (this.storage.full) return;
    this.env.trace?.(`${this.id}: a probe write succeeds, the disk has space again`);
    loop.storageWritable();
  }

  /** A tick of this node's clock that passed while it was paused. */
  missTick(): void {
    if (this.currentStatus === 'paused') this.missedTicks++;
  }

  receive(message: ClusterMessage): void {
    if (this.currentStatus === 'crashed') return;
    if (this.currentStatus === 'paused') {
      if (this.queued.length < queuedInputsMax) this.queued.push({ kind: 'message', message });
      return;
    }
    this.stats.messages++;
    this.loop!.coordinator.step(message);
    // As the runtime does: what arrives at one time is stepped, then one Ready carries it all out.
    this.scheduleDrain();
  }

  /** A client's request arriving. Proposes on a master; anything else is refused at once. */
  request(command: KvCommand, reply: (r: ClientReply) => void): void {
    if (this.currentStatus === 'crashed') return reply({ kind: 'rejected', reason: 'unavailable', master: null });
    if (this.currentStatus === 'paused') {
      if (this.queued.length < queuedInputsMax) this.queued.push({ kind: 'request', command, reply });
      else reply({ kind: 'unknown', why: 'request buffer full' });
      return;
    }
    this.handle(command, reply);
  }

  private handle(command: KvCommand, reply: (r: ClientReply) => void): void {
    if (command.op !== 'read' || command.mode === 'log') return this.propose(command, reply);
    const coordinator = this.loop!.coordinator;
    if (command.mode === 'stale' || (command.mode === 'sequential' && coordinator.hasReadLease())) {
      return this.replyRead(command.key, reply);
    }
    // Linearizable, or sequential without a lease: an index the master confirms first, through the runtime's batching.
    this.reads!.request((outcome) => {
      if (!outcome.ok) {
        const reason = outcome.error === 'overloaded' ? 'overloaded' : outcome.error === 'timeout' ? 'unavailable' : 'notMaster';
        return reply({ kind: 'rejected', reason, master: outcome.error === 'notConfirmed' ? (this.loop?.coordinator.softState().master ?? null) : null });
      }
      if (this.waitingReads.size >= waitingReadsMax) {
        const [oldestId, oldest] = this.waitingReads.entries().next().value as [string, WaitingRead];
        this.waitingReads.delete(oldestId);
        oldest.reply({ kind: 'rejected', reason: 'overloaded', master: null });
      }
      this.waitingReads.set(`${this.incarnation}.${++this.readSeq}`, { key: command.key, reply, index: outcome.index });
      // As the runtime's promise does, the read goes on after the Ready that confirmed it, not inside its loop.
      this.scheduleDrain();
    });
  }

  private replyRead(key: string, reply: (r: ClientReply) => void): void {
    const stateMachine = this.storage.stateMachine;
    const value: KvValue = stateMachine.get(key);
    reply({ kind: 'applied', result: { op: 'read', value }, index: stateMachine.appliedIndex });
  }

  /** An operator's cluster-state change (exclusions, settings, removals), asked of this node. */
  proposeClusterChange(change: ClusterChange): boolean {
    if (this.currentStatus !== 'running') return false;
    const outcome = this.loop!.coordinator.proposeClusterChange(change);
    this.drain();
    return outcome.ok;
  }

  /** Kills the process: everything not on the disk is gone, and every client waiting on this node hears "unknown". */
  crash(): void {
    if (this.currentStatus === 'crashed') return;
    this.env.trace?.(`${this.id} crashes`);
    this.currentStatus = 'crashed';
    // Whatever was written and not synced yet is lost with the process.
    this.env.observer.onUnsyncedLost(this);
    this.storage.loseUnsynced();
    this.loop = null;
    this.crashArmed = null;
    this.stats.crashes++;
    const queued = this.queued;
    this.queued = [];
    for (const input of queued) if (input.kind === 'request') input.reply({ kind: 'unknown', why: `${this.id} crashed` });
    // Everything waiting hears "unknown" (the process is gone; its timers with it).
    const writes = this.writes;
    this.writes = null;
    writes?.close();
    // A read changes nothing: whatever happened to it, the client may simply try again.
    // Queued writes were never proposed: certainly not appended.
    for (const { reply } of this.queue?.takeAll() ?? []) reply({ kind: 'rejected', reason: 'unavailable', master: null });
    this.queue = null;
    this.compaction?.close();
    this.compaction = null;
    const batcher = this.reads;
    this.reads = null;
    batcher?.close('timeout');
    const reads = [...this.waitingReads.values()];
    this.waitingReads.clear();
    for (const read of reads) read.reply({ kind: 'rejected', reason: 'unavailable', master: null });
  }

  /** Crashes while handling the next Ready, at `point` (for a crash between steps, call crash()). */
  armCrash(point: CrashPoint): void {
    if (this.currentStatus !== 'crashed') this.crashArmed = point;
  }

  disarmCrash(): void {
    this.crashArmed = null;
  }

  get crashIsArmed(): boolean {
    return this.crashArmed !== null;
  }

  restart(): void {
    if (this.currentStatus !== 'crashed') throw new Error(`${this.id} restarted while ${this.currentStatus}`);
    this.stats.restarts++;
    this.boot();
    this.drain();
  }

  pause(): void {
    if (this.currentStatus !== 'running') return;
    this.env.trace?.(`${this.id} pauses`);
    this.stats.pauses++;
    this.currentStatus = 'paused';
  }

  resume(): void {
    if (this.currentStatus !== 'paused') return;
    this.env.trace?.(`${this.id} resumes with ${this.queued.length} queued inputs, ${this.missedTicks} ticks missed`);
    this.currentStatus = 'running';
    // As the real runtime does from its monotonic clock (clusterRuntime.ts, syncClock): the ticks missed are caught
    // up (a long gap as skipped ticks), and only then is the queue read.
    const missed = this.missedTicks;
    this.missedTicks = 0;
    if (missed > 0) {
      this.stats.ticks += missed;
      this.loop!.coordinator.catchUp(missed);
      this.drain();
    }
    const queued = this.queued;
    this.queued = [];
    for (let i = 0; i < queued.length; i++) {
      if (this.currentStatus !== 'running') {
        // Crashed while working through the queue: the rest is lost with the process.
        for (const input of queued.slice(i)) if (input.kind === 'request') input.reply({ kind: 'unknown', why: `${this.id} crashed` });
        return;
      }
      const input = queued[i]!;
      if (input.kind === 'message') {
        this.stats.messages++;
        this.loop!.coordinator.step(input.message);
        this.scheduleDrain();
      } else if (input.kind === 'deferred') {
        input.run();
      } else {
        this.handle(input.command, input.reply);
      }
    }
  }

  // ---------------------------------------------------------------- internals

  private boot(): void {
    this.incarnation++;
    const random = this.env.random.fork();
    // Drawn only where syncs take time: a transcript's node draws what it drew before syncs could.
    this.syncDelays = this.config.syncDelayMax > 0 ? this.env.random.fork() : null;
    this.tickPeriodUnits = random.between(this.config.tickPeriodMin, this.config.tickPeriodMax);
    const options: CoordinatorOptions = {
      self: { id: this.id, name: this.id, address: `${this.id}:4400`, roles: this.config.roles, version: this.config.version },
      clusterName: this.config.clusterName,
      bootstrap: this.config.bootstrap,
      core: { ...this.config.tuning, entryBytes: simEntryBytes },
      ...this.config.coordinatorTuning,
      random,
      ...(isCoordinatorBug(this.config.injectedBug) ? { injectedBug: this.config.injectedBug } : {}),
    };
    const runtimeBug = this.config.injectedBug !== undefined && !isCoordinatorBug(this.config.injectedBug) ? this.config.injectedBug : undefined;
    const writes = new WriteTracker<KvResult | null, string>(this.incarnationTimers(), this.config.writeTimeoutUnits, runtimeBug);
    this.writes = writes;
    this.loop = new ReadyLoop(options, this.storage.restoredState(), () => this.config.discoveryPeers, this.readyStorage(), writes, this.readyHooks(), runtimeBug);
    this.loop.coordinator.setDiscoveryPeers(this.config.discoveryPeers);
    this.queue = new WriteQueue(simWriteQueueLimits);
    this.compaction = this.config.compaction === null ? null : this.newCompaction(this.config.compaction);
    this.drainScheduled = false;
    this.reads = new ReadIndexBatcher<'overloaded' | 'timeout' | 'notConfirmed'>(
      { ...this.incarnationTimers(), nowMs: () => this.env.scheduler.now, defer: this.deferral() },
      {
        master: () => this.loop!.coordinator.softState().master,
        confirm: (id) => {
          this.loop!.coordinator.readIndex(id);
          this.drain();
        },
        overloaded: () => 'overloaded',
        timedOut: () => 'timeout',
        notConfirmed: () => 'notConfirmed',
      },
      // A confirmation holds the next back for a tick, as in the runtime; it gives up as a write does.
      { waitersMax: waitingReadsMax, holdBackMs: this.tickPeriodUnits, timeoutMs: this.config.writeTimeoutUnits },
      String(this.incarnation),
      runtimeBug,
    );
    this.currentStatus = 'running';
    this.missedTicks = 0;
    this.env.trace?.(
      `${this.id} boots (incarnation ${this.incarnation}, tick every ${this.tickPeriodUnits}, snapshot ${this.storage.snapshotIndex}, ` +
        `journal ${this.storage.lastIndex}, applied ${this.storage.stateMachine.appliedIndex})`,
    );
    this.env.observer.onBoot(this);
    this.scheduleTick(random.between(1, this.tickPeriodUnits));
  }

  private scheduleTick(delay: number): void {
    const incarnation = this.incarnation;
    this.env.scheduler.after(delay, () => {
      if (incarnation !== this.incarnation || this.currentStatus === 'crashed') return;
      if (!this.stepMode) {
        this.missTick();
        this.tick();
      }
      // The tick may have crashed the node (an armed crash); then this incarnation's clock stops.
      if (incarnation === this.incarnation && this.status !== 'crashed') this.scheduleTick(this.tickPeriodUnits);
    });
  }

  /**
   * A write (or a log read) on the master: queued as the runtime queues it (WriteQueue), and proposed with the others
   * of this instant as one group — one Ready — once the node gets to it.
   */
  private propose(command: KvCommand, reply: (r: ClientReply) => void): void {
    const soft = this.loop!.coordinator.softState();
    if (soft.role !== 'master') return reply({ kind: 'rejected', reason: 'notMaster', master: soft.master });
    const bytes = JSON.stringify(command).length;
    if (this.queue!.refusal(bytes, this.writes!.waiting) !== null) return reply({ kind: 'rejected', reason: 'overloaded', master: null });
    this.queue!.push({ command, reply }, bytes);
    this.scheduleDrain();
  }

  /** The next group of queued writes, proposed together (ClusterRuntime.proposeQueued). */
  private proposeQueued(): void {
    // As the runtime: one group per Ready, none while a Ready waits for its sync.
    if (this.loop!.syncing) return;
    for (const { command, reply } of this.queue!.takeGroup()) {
      const outcome = this.loop!.coordinator.propose(command);
      if (!outcome.ok) {
        reply({ kind: 'rejected', reason: outcome.reason, master: outcome.master });
        continue;
      }
      this.env.observer.onProposalAccepted(this, outcome.index);
      this.writes!.proposed(outcome.index, outcome.term, (answer) => this.answerWrite(answer, reply));
    }
  }

  /** A drain after what is due now (the runtime's setImmediate), once however many writes arrive meanwhile. */
  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    // deferral() drops what an earlier incarnation deferred.
    this.deferral()(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  /** The runtime's Ready loop (see ReadyLoop), then the acknowledgements and the reads it made possible. */
  private drain(): void {
    if (this.currentStatus !== 'running') return;
    this.proposeQueued();
    if (this.stepMode) return;
    const loop = this.loop!;
    loop.drain();
    if (this.currentStatus !== 'running') return;
    this.afterReadys();
    if (this.queue!.length > 0 && !loop.syncing) this.scheduleDrain();
  }

  /** What follows the Ready loop: acknowledgements, reads, compaction. */
  private afterReadys(): void {
    this.settle();
    // As the runtime: no copy while a Ready waits for its sync (its applies are ahead of the coordinator).
    if (this.loop!.storageFailure === null && !this.loop!.syncing) this.compaction?.maybeCompact(this.storage.stateMachine.appliedIndex);
  }

  /** Message-level transcripts: see stepMode. Leaving it carries out every Ready waiting. */
  setStepMode(on: boolean): void {
    this.stepMode = on;
    if (!on) this.drain();
  }

  /**
   * In step mode: carries out the next Ready, as one round of the runtime's loop, and returns it with whether it went
   * through (null: none waits).
   */
  processReady(): { readonly ready: ClusterReady; readonly completed: boolean } | null {
    if (this.currentStatus !== 'running') return null;
    const step = this.loop!.step();
    // As the runtime's drain, with or without a Ready: the acknowledgements a stepped answer made possible.
    if (this.currentStatus === 'running') this.afterReadys();
    return step;
  }

  /** Acknowledges what the master may acknowledge; answers the direct reads whose index is applied. */
  private settle(): void {
    this.loop!.acknowledge();
    const applied = this.storage.stateMachine.appliedIndex;
    for (const [id, read] of this.waitingReads) {
      if (read.index <= applied) {
        this.waitingReads.delete(id);
        this.replyRead(read.key, read.reply);
      }
    }
  }

  /** The disk, as the Ready loop sees it: one atomic step per Ready (SimStorage's crash semantics). */
  private readyStorage(): ReadyStorage<KvResult | null, string> {
    return {
      commit: (ready) => {
        if (this.storage.refuses(ready)) throw new SimDiskFull();
        if (ready.bootstrapView !== undefined) this.storage.saveBootstrapView(ready.bootstrapView);
        const persisted = this.storage.persist(ready.snapshot, ready.hardState, ready.entries);
        if (ready.snapshot !== undefined) {
          this.stats.snapshotsInstalled++;
          this.env.trace?.(`${this.id} installs a snapshot at ${ready.snapshot.index}`);
        }
        this.env.observer.onPersist(this, persisted);
        const commitIndex = ready.committed.length > 0 ? this.loop!.coordinator.softState().commitIndex : 0;
        return ready.committed.map((entry) => ({ ok: true as const, result: this.apply(entry, commitIndex) }));
      },
      // As the runtime's WalSync: the disk syncs everything written so far; the process hears of it later (while
      // paused: at the resume, behind what arrived before), or never, when it crashed first.
      sync: (done) => {
        if (this.config.syncDelayMax === 0) {
          this.storage.sync();
          return done();
        }
        const incarnation = this.incarnation;
        this.env.scheduler.after(this.syncDelays!.between(0, this.config.syncDelayMax), () => {
          if (incarnation !== this.incarnation || this.currentStatus === 'crashed') return;
          this.storage.sync();
          if (this.currentStatus === 'paused') this.queued.push({ kind: 'deferred', run: done });
          else done();
        });
      },
      restoredState: () => this.storage.restoredState(),
    };
  }

  /** What the node does around each Ready: the armed crash, the reads it confirmed, compaction, disk failures. */
  private readyHooks(): ReadyLoopHooks<string> {
    return {
      committing: () => {
        if (this.crashArmed !== 'beforeCommit') return true;
        this.crashAt('before a commit');
        return false;
      },
      committed: () => {
        if (this.crashArmed !== 'afterCommit') return true;
        this.crashAt('after a commit, before its messages');
        return false;
      },
      send: (message) => this.env.send(message),
      done: (ready) => {
        for (const state of ready.readStates) this.reads!.answered(state.id, state.index);
        if (ready.snapshot !== undefined) this.compaction?.installed(ready.snapshot.index);
        if (this.crashArmed !== 'afterReady') return true;
        this.crashAt('after a Ready');
        return false;
      },
      commitFailed: (_ready, err) => {
        // A broken invariant (the checker's, or the disk model's) is the seed's failure, never a full disk.
        if (!(err instanceof SimDiskFull)) throw err;
        // The reads the old coordinator was confirming never hear of it again: refused, so that the client retries.
        this.reads!.abandonAsked();
        this.ticksSinceStorageProbe = 0;
        return 'disk full';
      },
      storageWritable: () => this.env.trace?.(`${this.id} stores entries again`),
      resume: () => this.drain(),
    };
  }

  /**
   * The runtime's compaction schedule on this node's disk: a copy is made at once (or fails, while the disk is
   * full, and is tried again later); compacting stores the snapshot and drops the journal below it in one step —
   * unless the disk is full, when the coordinator has compacted and the disk has not, as in production.
   */
  private newCompaction(limits: SimCompaction): Compaction<SimStateCopy> {
    const stateMachine = this.storage.stateMachine;
    return new Compaction<SimStateCopy>(
      {
        latestSnapshotIndex: () => this.loop!.coordinator.core.latestSnapshot().index,
        hasCopy: () => true,
        startCopy: (done, failed) => {
          if (this.storage.full) failed(new SimDiskFull());
          else done({ index: stateMachine.appliedIndex, data: stateMachine.exportSnapshot() });
          return () => {};
        },
        adopt: () => {},
        discard: () => {},
        compactAt: (copy) => {
          const snapshot = this.loop!.coordinator.compact(copy.data, copy.index);
          if (this.storage.full) {
            // As the runtime, whose copy is a snapshot file written and fsynced before the disk filled: the
            // snapshot the node sends from now on is that file.
            this.storage.keepSnapshotCopy(snapshot.index);
            this.env.trace?.(`${this.id} compacts its journal to ${snapshot.index} in memory; the full disk keeps it`);
            return;
          }
          this.storage.saveSnapshot(snapshot);
          this.storage.sync();
          this.env.observer.onCompact(this, snapshot);
          this.env.trace?.(`${this.id} compacts its journal to ${snapshot.index}`);
        },
        keepOnly: () => {},
      },
      { compactionEntriesMin: limits.entriesMin, journalRetainEntries: limits.retainEntries, copyRetryDelayMs: this.config.tuning.electionTimeoutTicks * this.tickPeriodUnits },
      () => this.env.scheduler.now,
      () => this.scheduleDrain(),
    );
  }

  private crashAt(where: string): void {
    this.env.trace?.(`${this.id} crash armed: ${where}`);
    this.crash();
  }

  private apply(entry: Entry, commitIndex: number): KvResult | null {
    const result = this.storage.apply(entry);
    this.stats.applied++;
    this.env.observer.onApply(this, entry, commitIndex);
    return result;
  }

  /**
   * What the client hears of a write, from the runtime's own answer: a refusal where the runtime says nothing was
   * or ever will be applied (so the linearizability checker holds it to that), "unknown" where it says it may be.
   */
  private answerWrite(outcome: WriteOutcome<KvResult | null, string>, reply: (r: ClientReply) => void): void {
    switch (outcome.kind) {
      case 'acknowledged':
        if (outcome.result === null) throw new Error(`${this.id}: a client write acknowledged at ${outcome.index}, which is not a command`);
        this.env.observer.onAcknowledged(this, outcome.index);
        return reply({ kind: 'applied', result: outcome.result, index: outcome.index });
      case 'notStored':
        return reply({ kind: 'rejected', reason: 'diskFull', master: null });
      case 'replaced':
        return reply({ kind: 'rejected', reason: 'notMaster', master: null });
      case 'refusedByApply':
        throw new Error(`${this.id}: the register state machine refused entry ${outcome.index}: ${outcome.error}`);
      case 'unconfirmed':
      case 'unknown':
        return reply({ kind: 'unknown', why: `${this.id}: ${outcome.kind} at ${outcome.index} (${outcome.why})` });
    }
  }

  /**
   * The process's setImmediate: runs after what is due now, in this incarnation only; work due while paused waits in
   * the receive queue for the resume, behind what arrived before it.
   */
  private deferral(): (run: () => void) => void {
    const incarnation = this.incarnation;
    return (run) =>
      this.env.scheduler.after(0, () => {
        if (incarnation !== this.incarnation || this.currentStatus === 'crashed') return;
        if (this.currentStatus === 'paused') {
          // Never dropped, whatever the receive buffer holds: a part defers one piece of work at a time (a drain, a
          // read batch), and losing it would leave that part waiting forever.
          this.queued.push({ kind: 'deferred', run });
          return;
        }
        run();
      });
  }

  /** Timers that die with this incarnation (a crash takes the process's timers with it). */
  private incarnationTimers(): WriteTimers {
    const incarnation = this.incarnation;
    return {
      set: (callback, delay) => {
        const handle = { cancelled: false };
        this.env.scheduler.after(delay, () => {
          if (!handle.cancelled && incarnation === this.incarnation && this.currentStatus !== 'crashed') {
            callback();
            if (this.currentStatus === 'running') this.drain();
          }
        });
        return handle;
      },
      clear: (handle) => {
        (handle as { cancelled: boolean }).cancelled = true;
      },
    };
  }
}

/** The simulated disk refused a Ready (nothing of it was stored): the only error a commit may fail with. */
class SimDiskFull extends Error {
  constructor() {
    super('disk full');
    this.name = 'SimDiskFull';
  }
}

function isCoordinatorBug(bug: CoordinatorBug | RuntimeBug | undefined): bug is CoordinatorBug {
  return bug !== undefined && (coordinatorBugs as readonly string[]).includes(bug);
}

/** An entry's size for the byte bound on appends: its JSON, which is deterministic. */
function simEntryBytes(entry: Entry): number {
  return JSON.stringify(entry.payload).length + 16;
}
