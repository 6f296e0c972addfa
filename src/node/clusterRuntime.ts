import { randomInt, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';

import { applyCommand, type ApplyResult } from '../content/apply.js';
import type { Command } from '../content/commands.js';
import type { BootstrapMethod } from '../core/bootstrap.js';
import { ClusterCoordinator, type ClusterReady, type CoordinatorBug, type CoordinatorOptions } from '../core/clusterCoordinator.js';
import type { ClusterMessage } from '../core/clusterMessages.js';
import type { ClusterChange, ClusterState, NodeDescriptor } from '../core/clusterState.js';
import type { Entry, Snapshot, SnapshotRequest, SoftState } from '../core/types.js';
import { ConclaveError, invariant, isConclaveError } from '../errors/catalogue.js';
import type { SnapshotDownloadProgress, SnapshotFetcher } from '../replication/snapshotFetcher.js';
import type { ContentTables } from '../storage/contentTables.js';
import { getMeta, storageError, type Db } from '../storage/database.js';
import { forgetPayloadBytes, payloadBytes, proposedCommandBytes, type JournalStore } from '../storage/journal.js';
import {
  attachSnapshot,
  fileRefOf,
  removeDatabaseFile,
  replaceStateMachine,
  writeSnapshotFile,
  type SnapshotFileInfo,
  type SnapshotFileRef,
} from '../storage/snapshotFile.js';
import type { SnapshotStore } from '../storage/snapshotStore.js';
import { WalCheckpointer } from '../storage/walCheckpointer.js';
import { WalSync } from '../storage/walSync.js';
import { Compaction } from './compaction.js';
import { ReadIndexBatcher } from './readIndexBatcher.js';
import { ReadyLoop, type ReadyStorage } from './readyLoop.js';
import { WriteQueue, type QueueRefusal } from './writeQueue.js';
import { WriteTracker, type WriteOutcome, type WriteTimers } from './writeTracker.js';

/**
 * The runtime that drives the coordination layer with real time, real storage and a real network: a timer ticks
 * the coordinator, messages from the transport are stepped into it, and after every input the Ready contract is
 * carried out —
 *
 *   one SQLite transaction (fsynced at commit): journal entries, hard state, bootstrap view, and the committed
 *   entries applied to the content tables with the applied index; then the messages go out.
 *
 * Applying in the same transaction as persisting is allowed: the committed entries become durable with it, and
 * nothing leaves the node before the commit. It also makes a one-node cluster cost one fsync per batch, as the
 * group commit before it did: proposals arriving in one event-loop turn share a Ready.
 */
export interface RuntimeOptions {
  readonly self: NodeDescriptor;
  readonly clusterName: string;
  readonly bootstrap: BootstrapMethod;
  readonly tickMs: number;
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  readonly nodeFailureTimeoutTicks: number;
  readonly inSyncTimeoutTicks: number;
  /** Most bytes of entries in one append (replication.appendBytesMax), capped at half a transport frame. */
  readonly appendBytesMax: number;
  readonly publishTimeoutTicks: number;
  /** The bound on clock rates between nodes that read leases rest on (src/core/lease.ts). */
  readonly clockDriftPercent: number;
  /** How long a read waits for the master to confirm a read index before CLUSTER_NO_MASTER. */
  readonly readIndexTimeoutMs: number;
  /** Most reads waiting for a read index at once; more are refused with OVERLOADED. */
  readonly readIndexWaitersMax: number;
  /** Most writes taken into one Ready (one transaction, one fsync). */
  readonly groupCommitEntriesMax: number;
  /** Most encoded bytes taken into one Ready (a larger single write still goes, alone). */
  readonly groupCommitBytesMax: number;
  /** Most writes queued or waiting for their entry to be applied; more are refused with OVERLOADED. */
  readonly writeQueueEntriesMax: number;
  /** Most encoded bytes of queued writes (one is always let in, however large). */
  readonly writeQueueBytesMax: number;
  /** The transport's largest message: it bounds how many entries one append may carry. */
  readonly frameBytesMax: number;
  /** How long a proposal waits for its entry to be applied before the client hears WRITE_OUTCOME_UNKNOWN. */
  readonly writeTimeoutMs: number;
  /**
   * Checkpoints of the WAL in a worker thread (WalCheckpointer): how often, and the node's own automatic checkpoint's
   * threshold in pages. Without them, SQLite's automatic checkpoint alone, on the event loop (tests of the runtime).
   */
  readonly walCheckpoint?: { readonly intervalMs: number; readonly walCheckpointPages: number };
  /** How often a condition that stops progress is logged again while it lasts (default 10 s; tests shorten it). */
  readonly progressProblemLogIntervalMs?: number;
  /** Test-only (CONCLAVE_TEST_INJECTED_BUG): breaks one coordination rule so the chaos harness can prove it notices. */
  readonly injectedBug?: CoordinatorBug;
}

/**
 * Journal compaction and snapshot transfer (absent: the node never compacts, and cannot take a snapshot).
 *
 * Compaction (when: compaction.ts): the copy of the state machine is a snapshot file written off the event loop
 * (snapshotFile.ts); compacting at it drops the journal up to its index and stores the snapshot's metadata in one
 * transaction; then the previous file goes (once no transfer reads it).
 *
 * Install: a snapshotRequest is held back until its file is downloaded and verified (the fetcher); then it is
 * stepped, and the Ready that carries the snapshot replaces the state machine from the file in the same
 * transaction as the rest of the Ready.
 */
export interface RuntimeSnapshots {
  readonly store: SnapshotStore;
  readonly fetcher: SnapshotFetcher;
  readonly compactionEntriesMin: number;
  readonly journalRetainEntries: number;
}

/** Told of every Ready the runtime persisted, with how long its transaction took (src/metrics/readyMetrics.ts). */
export interface ReadyObserver {
  persisted(ready: ClusterReady, durationMs: number): void;
}

/** What GET /api/v1/cluster/status shows of this node's snapshots. */
export interface SnapshotStatus {
  /** The snapshot the journal starts after (0: never compacted). */
  readonly index: number;
  readonly download: SnapshotDownloadProgress | null;
}

/** A failed snapshot write is tried again after this pause (a full disk must not make the node loop on it). */
const snapshotCopyRetryDelayMs = 10_000;

/** A snapshot file written by compaction (compaction.ts), until it is adopted into the store or removed. */
interface SnapshotFileCopy {
  readonly index: number;
  readonly path: string;
  readonly info: SnapshotFileInfo;
}

/** How the runtime reaches its peers: the transport, or nothing for a node that runs alone. */
export interface Wire {
  send(message: ClusterMessage): boolean;
}

export interface Committed {
  readonly index: number;
  readonly result: ApplyResult;
}

interface QueuedProposal {
  readonly command: Command;
  readonly resolve: (committed: Committed) => void;
  readonly reject: (err: Error) => void;
}

/**
 * A ticker callback this late means the event loop was held up (a long synchronous step, a stopped process, a
 * starved machine). Said in the log because a stalled master misses heartbeats and loses its leadership, and the
 * log is where an operator looks for why.
 */
const eventLoopStallWarnMs = 250;
/** How often a condition that keeps the cluster from progress is logged again while it lasts (never silent, never a flood). */
const progressProblemLogIntervalMsDefault = 10_000;

/** A committed entry this node could not apply: the Ready rolled back, and the entry is tried again at each tick. */
class ApplyFailure extends Error {
  constructor(
    readonly index: number,
    cause: unknown,
  ) {
    super(`the committed entry at index ${index} cannot be applied here: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'ApplyFailure';
  }
}

/** Why this node cannot make progress (health and cluster status report it; see writeProblem). */
export interface WriteProblem {
  /** stalled: master whose entries wait unacknowledged past writeTimeoutMs; refusing-appends: this node drops the
   * master's appends (it cannot decode them); apply-failed: a committed entry cannot be applied here. */
  readonly kind: 'stalled' | 'refusing-appends' | 'apply-failed';
  /** The first entry concerned (for refusing-appends, when the refusal named one). */
  readonly index: number | null;
  readonly sinceMs: number;
  readonly detail: string;
}
/** Discarded entries listed one by one in the log; the count covers the rest. */
const discardedSampleMax = 20;

function describeCommand(command: Command): string {
  const target = 'path' in command ? command.path : 'from' in command ? command.from : 'name' in command ? command.name : '';
  return `${command.type}${target !== '' ? ` ${target}` : ''}`;
}

const cryptoRandom = { nextInt: (bound: number) => randomInt(bound) };

/** The write path's timers on the event loop. */
const eventLoopTimers: WriteTimers = {
  set: (callback, delayMs) => setTimeout(callback, delayMs),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** What to do about each refusal of a join (the handshake refuses wrong names and secrets before this). */
const joinRemedies: Record<string, string> = {
  clusterNameMismatch: 'it belongs to another cluster name; set the same --cluster-name on every node',
  clusterUuidMismatch: 'this node belongs to another cluster (its data directory holds that cluster\'s UUID); use an empty --data, or run `conclave node detach-cluster` on it',
  nameInUse: 'another member already has this node\'s name; give it a unique --name',
  incompatibleVersion: 'its version cannot join this cluster (another major, or older than the oldest member); run the cluster\'s version',
};

export class ClusterRuntime {
  /** The Ready loop, which owns the coordinator (a failed commit starts a new one from the disk). */
  private readonly loop: ReadyLoop<ApplyResult, ConclaveError>;
  private coordinatorOptions: CoordinatorOptions;
  private discoveryPeers: readonly string[] = [];
  /** When probeStorage last tried the disk (performance.now()). */
  private storageProbedAtMs = Number.NEGATIVE_INFINITY;
  private wire: Wire | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private drainScheduled = false;
  private closed = false;
  private appliedIndexValue: number;
  /** The journal's last index on disk (or its snapshot's when empty): an append after it discards nothing. */
  private journalLastIndex: number;
  /** The writes proposed here, until their answer (see WriteTracker). */
  private readonly writes: WriteTracker<ApplyResult, ConclaveError>;
  /** Whether the drain under way applied entries or installed a snapshot (the change listeners hear of it). */
  private appliedInDrain = false;
  /** When the Ready being committed started its transaction (performance.now()). */
  private commitStartedMs = 0;
  private readonly reads: ReadIndexBatcher<ConclaveError>;
  /** Ticks follow the monotonic clock (see syncClock): the start, and how many were delivered. */
  private clockStartMs = 0;
  private ticksDelivered = 0;
  private readonly queue: WriteQueue<QueuedProposal>;
  private readonly persistAndApply;
  private readonly applyInSavepoint;
  private readonly saveApplied;
  private readonly listeners = new Set<() => void>();
  private readonly appliedListeners = new Set<(entries: readonly Entry[]) => void>();
  private lastSoft: SoftState;
  /** On the master: the acknowledged index last seen to move, and when (see observeWriteProgress). */
  private writeProgress = { acknowledgedIndex: 0, sinceMs: 0 };
  private stalledLoggedAtMs = -Infinity;
  /** This node's latest refusal of an append from the master, while it lasts (see refusedAppend). */
  private appendRefusal: { readonly atMs: number; readonly sinceMs: number; readonly index: number | null; readonly problem: string; loggedAtMs: number } | null = null;
  /** A committed entry that cannot be applied here, while it cannot. */
  private applyFailure: { readonly index: number; readonly sinceMs: number; readonly detail: string; loggedAtMs: number } | null = null;
  private lastJoinOutcome: string | null = null;
  // Snapshots (see RuntimeSnapshots).
  private readonly compaction: Compaction<SnapshotFileCopy> | null;
  private readonly walSync: WalSync;
  private readonly checkpointer: WalCheckpointer | null;
  private checkpointerClosed: Promise<void> | null = null;
  private readonly snapshotListeners = new Set<(snapshot: Snapshot) => void>();
  /** Metrics of each persisted Ready; null: none taken. */
  readyObserver: ReadyObserver | null = null;

  constructor(
    private readonly db: Db,
    private readonly journal: JournalStore,
    private readonly content: ContentTables,
    private readonly options: RuntimeOptions,
    private readonly log: Logger,
    private readonly snapshots?: RuntimeSnapshots,
  ) {
    invariant(options.appendBytesMax <= options.frameBytesMax / 2, `appendBytesMax ${options.appendBytesMax} is above half of frameBytesMax ${options.frameBytesMax}`);
    this.appliedIndexValue = getMeta<number>(db, 'applied_index') ?? 0;
    this.journalLastIndex = journal.lastIndex();
    this.writes = new WriteTracker(eventLoopTimers, options.writeTimeoutMs);
    this.queue = new WriteQueue({
      entriesMax: options.writeQueueEntriesMax,
      bytesMax: options.writeQueueBytesMax,
      groupEntriesMax: options.groupCommitEntriesMax,
      groupBytesMax: options.groupCommitBytesMax,
    });
    const coordinatorOptions: CoordinatorOptions = {
      self: options.self,
      clusterName: options.clusterName,
      bootstrap: options.bootstrap,
      core: {
        electionTimeoutTicks: options.electionTimeoutTicks,
        heartbeatIntervalTicks: options.heartbeatIntervalTicks,
        // Appends are bounded by bytes: at most appendBytesMax (at most half a frame: the configuration refuses more)
        // plus, when a single entry is larger, that one entry — about 1 MiB at most (the properties limit) plus its
        // command, well within transport.frameBytesMax (4 MiB or more), which the transport would otherwise drop.
        appendEntriesMax,
        appendBytesMax: options.appendBytesMax,
        entryBytes,
        inflightAppendsMax,
        uncommittedEntriesMax: options.writeQueueEntriesMax,
        clockDriftPercent: options.clockDriftPercent,
        readIndexPendingMax: options.readIndexWaitersMax,
      },
      probeIntervalTicks: options.heartbeatIntervalTicks * probeIntervalHeartbeats,
      discoveryInfoTicksMax: options.electionTimeoutTicks * discoveryInfoElectionTimeouts,
      discoveredPeersMax,
      joinRetryTicks: options.heartbeatIntervalTicks * joinRetryHeartbeats,
      nodeFailureTimeoutTicks: options.nodeFailureTimeoutTicks,
      inSyncTimeoutTicks: options.inSyncTimeoutTicks,
      publishTimeoutTicks: options.publishTimeoutTicks,
      pendingChangesMax: pendingClusterChangesMax,
      random: cryptoRandom,
      ...(options.injectedBug !== undefined ? { injectedBug: options.injectedBug } : {}),
    };
    this.coordinatorOptions = coordinatorOptions;
    this.saveApplied = db.prepare(`INSERT INTO meta(key, value) VALUES ('applied_index', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
    this.applyInSavepoint = db.transaction((command: Command) => applyCommand(this.content, command));
    this.persistAndApply = db.transaction((ready: ClusterReady) => {
      let appliedIndex = this.appliedIndexValue;
      if (ready.snapshot !== undefined) {
        // The file is attached (prepareSnapshotInstall): the state machine becomes the snapshot's, the journal goes.
        replaceStateMachine(this.db, ready.snapshot.index);
        this.content.usersReplaced();
        this.journal.install(ready.snapshot);
        appliedIndex = ready.snapshot.index;
      }
      if (ready.bootstrapView !== undefined) this.journal.saveBootstrapView(ready.bootstrapView);
      if (ready.hardState !== undefined) this.journal.saveHardState(ready.hardState);
      if (ready.entries.length > 0 && ready.snapshot === undefined) this.reportDiscarded(ready.entries[0]!.index);
      this.journal.write(ready.entries);
      invariant(ready.committed.length === 0 || ready.committed[0]!.index === appliedIndex + 1, 'committed entries handed out twice');
      const outcomes = ready.committed.map((entry) => this.applyEntry(entry));
      if (ready.committed.length > 0) this.saveApplied.run(ready.committed[ready.committed.length - 1]!.index);
      return outcomes;
    });
    const restored = journal.restoredState(this.appliedIndexValue);
    // Every Ready commits without an fsync of its own (synchronous=NORMAL: its frames are written to the WAL), and
    // the Ready loop asks for the fsync separately when the Ready must be durable (readyNeedsSync): WalSync runs it
    // off the event loop, which meanwhile reads messages and takes proposals for the next Ready. The connection is
    // put back to FULL at once, for every other transaction. (A prepared PRAGMA statement takes effect when
    // prepared, not when run: hence db.pragma, about 6 µs a call.)
    this.walSync = new WalSync(db);
    this.checkpointer =
      options.walCheckpoint === undefined ? null : new WalCheckpointer(db, options.walCheckpoint, (message) => this.log.warn({ error: message }, 'a checkpoint of the write-ahead log failed; the next one tries again'));
    const storage: ReadyStorage<ApplyResult, ConclaveError> = {
      commit: (ready) => {
        let outcomes: Array<ApplyResult | ConclaveError>;
        db.pragma('synchronous = NORMAL');
        try {
          outcomes = this.persistAndApply(ready);
        } finally {
          db.pragma('synchronous = FULL');
        }
        this.checkpointer?.noteCommit();
        return outcomes.map((outcome) => (outcome instanceof ConclaveError ? { ok: false, error: outcome } : { ok: true, result: outcome }));
      },
      sync: (done) =>
        this.walSync.sync(
          () => {
            // After close the node's parts are going away: what was synced stays synced, nothing more is sent.
            if (!this.closed) done();
          },
          (err) => this.walSyncFailed(err),
        ),
      restoredState: () => this.journal.restoredState(this.appliedIndexValue),
    };
    this.loop = new ReadyLoop(coordinatorOptions, restored, () => this.discoveryPeers, storage, this.writes, {
      beforeCommit: (ready) => {
        const detach = ready.snapshot !== undefined ? this.prepareSnapshotInstall(ready.snapshot) : null;
        this.commitStartedMs = performance.now();
        return detach === null ? null : () => this.detachSnapshot(detach);
      },
      written: (ready) => this.afterWrite(ready),
      committed: (ready) => {
        this.readyObserver?.persisted(ready, performance.now() - this.commitStartedMs);
        return true;
      },
      send: (message) => this.wire?.send(message),
      done: (ready) => {
        this.afterReady(ready);
        return true;
      },
      commitFailed: (_ready, err) => {
        const error = this.onCommitFailed(err);
        // The coordinator asked to confirm reads is replaced by one from the disk: those confirmations never come.
        this.reads.abandonAsked();
        return error;
      },
      storageWritable: () => this.log.info('the journal is writable again'),
      resume: () => this.drain(),
    });
    this.reads = new ReadIndexBatcher(
      { ...eventLoopTimers, nowMs: () => performance.now(), defer: (run) => setImmediate(run) },
      {
        master: () => this.coordinator.softState().master,
        confirm: (id) => {
          this.syncClock();
          this.coordinator.readIndex(id);
          this.drain();
        },
        overloaded: (waiting) =>
          new ConclaveError('OVERLOADED', `${waiting} reads are waiting for the master to confirm; retry after a short pause.`, { readIndexWaitersMax: options.readIndexWaitersMax }),
        timedOut: () => new ConclaveError('CLUSTER_NO_MASTER', `The master did not confirm the read within ${options.readIndexTimeoutMs} ms; retry shortly.`),
        // The node asked could not confirm (it stopped being master, or holds too many reads). A read is safe to
        // retry anywhere, so it is a retryable refusal, not a write's NOT_MASTER redirect.
        notConfirmed: () =>
          new ConclaveError('CLUSTER_NO_MASTER', 'The master could not confirm the read (it stepped down or is overloaded); retry shortly, or read with consistency=stale.'),
      },
      { waitersMax: options.readIndexWaitersMax, holdBackMs: options.tickMs, timeoutMs: options.readIndexTimeoutMs },
      // Unique to this process: a confirmation answered to an earlier process of this node (a late message after a
      // quick restart) must not pass for one this process asked.
      `${options.self.id}.${randomUUID()}`,
    );
    this.compaction = snapshots === undefined ? null : this.snapshotCompaction(snapshots);
    this.lastSoft = this.coordinator.softState();
  }

  get coordinator(): ClusterCoordinator {
    return this.loop.coordinator;
  }

  // ---------------------------------------------------------------- lifecycle

  start(wire: Wire | null): void {
    this.wire = wire;
    this.clockStartMs = performance.now();
    this.ticksDelivered = 0;
    this.writeProgress = { acknowledgedIndex: 0, sinceMs: this.clockStartMs };
    let lastTickAtMs = this.clockStartMs;
    this.ticker = setInterval(() => {
      const nowMs = performance.now();
      const lateMs = nowMs - lastTickAtMs - this.options.tickMs;
      lastTickAtMs = nowMs;
      if (lateMs > eventLoopStallWarnMs) this.log.warn({ lateMs: Math.round(lateMs) }, `the event loop was held up for ${Math.round(lateMs)} ms; heartbeats and timers ran late`);
      this.syncClock();
      this.probeStorage(nowMs);
      this.drain();
      this.observeWriteProgress();
    }, this.options.tickMs);
    this.drain();
  }

  /**
   * Delivers the ticks the monotonic clock says are due. Timers fire late and not at all while the process is
   * stopped; counting ticks by timer callbacks would make this node's clock run slow, and a slow clock stretches
   * its read leases (src/core/lease.ts assumes clock rates within clockDriftPercent of each other). So every
   * decision that reads the clock — a message, a lease check — first catches up here. After a long gap (this node
   * was held up) the ticks pass as skipped ones: they move the clock but no timeout, since what peers sent meanwhile
   * is still unread (ClusterCoordinator.catchUp).
   */
  private syncClock(): void {
    if (this.ticker === null) return;
    const due = Math.floor((performance.now() - this.clockStartMs) / this.options.tickMs) - this.ticksDelivered;
    if (due <= 0) return;
    this.ticksDelivered += due;
    this.coordinator.catchUp(due);
  }

  /**
   * Resolves once close() has run and the storage's worker threads have closed their connections to the database:
   * the node's own connection is then the last, and closing it checkpoints and removes the WAL.
   */
  storageClosed(): Promise<void> {
    return this.checkpointerClosed ?? Promise.resolve();
  }

  /** Stops ticking and refuses new proposals; pending ones hear SHUTTING_DOWN (their outcome is unknown). */
  close(): void {
    this.closed = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    this.compaction?.close();
    this.walSync.close();
    this.checkpointerClosed = this.checkpointer?.close() ?? Promise.resolve();
    this.snapshots?.fetcher.close();
    this.writes.close();
    const queued = this.queue.takeAll();
    for (const q of queued) q.reject(new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; the write was not applied. Retry on another node or later.'));
    this.reads.close(new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; retry the read on another node.'));
  }

  // ---------------------------------------------------------------- inputs

  /** Changes this node's published addresses (the HTTP port is known only once listening). */
  updateSelf(change: Pick<NodeDescriptor, 'httpAddress' | 'internalHttpAddress'>): void {
    this.coordinator.updateSelf({ ...this.coordinator.descriptor(), ...change });
    this.coordinatorOptions = { ...this.coordinatorOptions, self: { ...this.coordinatorOptions.self, ...change } };
    this.loop.updateOptions(this.coordinatorOptions);
    this.scheduleDrain();
  }

  receive(message: ClusterMessage): void {
    if (this.closed) return;
    if (message.type === 'snapshotRequest' && !this.snapshotFileReady(message)) return;
    this.syncClock();
    // An append with entries taken again: whatever this node refused before decodes now.
    if (this.appendRefusal !== null && message.type === 'appendRequest' && message.entries.length > 0) this.appendRefusal = null;
    this.coordinator.step(message);
    this.scheduleDrain();
  }

  /** True while a sequential read may be served from this node's state without asking anyone (src/core/lease.ts). */
  hasReadLease(): boolean {
    if (this.closed) return false;
    this.syncClock();
    return this.coordinator.hasReadLease();
  }

  /** An index a linearizable read must wait for, confirmed by the master with a quorum round (ReadIndexBatcher). */
  readIndex(): Promise<number> {
    if (this.closed) return Promise.reject(new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; retry the read on another node.'));
    return new Promise<number>((resolve, reject) => this.reads.request((outcome) => (outcome.ok ? resolve(outcome.index) : reject(outcome.error))));
  }

  setDiscoveryPeers(ids: readonly string[]): void {
    this.discoveryPeers = ids;
    this.coordinator.setDiscoveryPeers(ids);
  }

  /**
   * Proposes a content command on the master; resolves once it is committed and applied here. Writes that arrive
   * in one event-loop turn are proposed together and share one Ready: one transaction, one fsync.
   */
  propose(command: Command): Promise<Committed> {
    if (this.closed) return Promise.reject(new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; retry on another node or later.'));
    const storageFailure = this.loop.storageFailure;
    if (storageFailure !== null) return Promise.reject(storageFailure);
    const soft = this.coordinator.softState();
    if (soft.role !== 'master') return Promise.reject(this.refusal('notMaster', soft.master));
    const full = this.queue.entriesRefusal(this.writes.waiting);
    if (full !== null) return Promise.reject(this.queueRefusal(full));
    let bytes: number;
    try {
      // Refuses (COMMAND_NOT_REPLICABLE) what every node could not decode and apply exactly as this one would.
      bytes = proposedCommandBytes(command);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const refused = this.queue.refusal(bytes, this.writes.waiting);
    if (refused !== null) return Promise.reject(this.queueRefusal(refused));
    return new Promise<Committed>((resolve, reject) => {
      this.queue.push({ command, resolve, reject }, bytes);
      this.scheduleDrain();
    });
  }

  private queueRefusal(refusal: QueueRefusal): ConclaveError {
    return refusal.kind === 'entries'
      ? new ConclaveError('OVERLOADED', `${refusal.waiting} writes are waiting to commit; retry after a short pause.`, { writeQueueEntriesMax: this.options.writeQueueEntriesMax })
      : new ConclaveError('OVERLOADED', `The write queue holds ${refusal.queuedBytes} bytes; retry after a short pause.`, { writeQueueBytesMax: this.options.writeQueueBytesMax });
  }

  /** Hands the next group of queued writes to the coordinator, within the group-commit bounds. */
  private proposeQueued(): void {
    // One group per Ready: while a Ready waits for its sync the writes wait in the queue (bounded there), and the
    // next group goes once the loop takes Readys again — or a transaction would carry every group of the fsync.
    if (this.loop.syncing) return;
    for (const proposal of this.queue.takeGroup()) {
      const outcome = this.coordinator.propose(proposal.command);
      if (!outcome.ok) {
        proposal.reject(this.refusal(outcome.reason, outcome.master));
        continue;
      }
      this.writes.proposed(outcome.index, outcome.term, (answer) => this.answerWrite(proposal, answer));
    }
  }

  /** Says how a write ended to the client that proposed it (see WriteOutcome). */
  private answerWrite(proposal: QueuedProposal, outcome: WriteOutcome<ApplyResult, ConclaveError>): void {
    switch (outcome.kind) {
      case 'acknowledged':
        return proposal.resolve({ index: outcome.index, result: outcome.result });
      case 'refusedByApply':
      case 'notStored':
        return proposal.reject(outcome.error);
      case 'replaced':
        return proposal.reject(new ConclaveError('MASTER_CHANGED', 'The master changed before the write committed; it was not applied. Retry.'));
      case 'unconfirmed':
        return proposal.reject(
          this.unconfirmed(
            outcome.index,
            outcome.why === 'masterChanged'
              ? 'the master changed'
              : outcome.why === 'shutdown'
                ? 'the node is shutting down'
                : `not every in-sync node confirmed it within ${this.options.writeTimeoutMs} ms`,
          ),
        );
      case 'unknown':
        if (outcome.why === 'shutdown') return proposal.reject(new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; the write may or may not have been applied.'));
        if (outcome.why === 'indexReused') {
          return proposal.reject(
            new ConclaveError('WRITE_OUTCOME_UNKNOWN', 'The master changed before the write committed; it may still be applied. Read before retrying.', { index: outcome.index }),
          );
        }
        if (outcome.why === 'snapshotInstalled') {
          return proposal.reject(
            new ConclaveError('WRITE_OUTCOME_UNKNOWN', 'This node installed a snapshot over the write; it may have been applied. Read before retrying.', { index: outcome.index }),
          );
        }
        return proposal.reject(
          new ConclaveError('WRITE_OUTCOME_UNKNOWN', `The write was not applied within ${this.options.writeTimeoutMs} ms; it may still be. Read before retrying.`, {
            index: outcome.index,
          }),
        );
    }
  }

  /** An operator's (or a job's) cluster-state change, on the master. */
  proposeClusterChange(change: ClusterChange): void {
    const outcome = this.coordinator.proposeClusterChange(change);
    if (!outcome.ok && outcome.reason === 'refused') throw new ConclaveError('INVALID_REQUEST', `The cluster state refuses the change: ${outcome.problem}.`);
    if (!outcome.ok) throw this.refusal(outcome.reason === 'busy' ? 'overloaded' : 'notMaster', outcome.master);
    this.scheduleDrain();
  }

  private refusal(reason: 'notMaster' | 'overloaded' | 'configurationChangeInProgress', master: string | null): ConclaveError {
    if (reason === 'overloaded') return new ConclaveError('OVERLOADED', 'Too many writes are waiting to commit; retry after a short pause.');
    if (master === null || master === this.options.self.id) {
      return new ConclaveError('CLUSTER_NO_MASTER', 'No master is elected at the moment; writes are refused until one is. Retry shortly.');
    }
    const descriptor = this.coordinator.clusterState().nodes.find((n) => n.id === master);
    return new ConclaveError('NOT_MASTER', `This node is not the master; send writes to ${descriptor?.name ?? master}.`, {
      master: descriptor?.name ?? master,
      ...(descriptor?.httpAddress !== undefined ? { masterHttpAddress: descriptor.httpAddress } : {}),
    });
  }

  // ---------------------------------------------------------------- outputs

  get appliedIndex(): number {
    return this.appliedIndexValue;
  }

  /** This node as it describes itself to the cluster. */
  self(): NodeDescriptor {
    return this.coordinator.descriptor();
  }

  /** Master ticks of silence after which a member counts as down (status) and leaves the in-sync set. */
  get nodeFailureTimeoutTicks(): number {
    return this.options.nodeFailureTimeoutTicks;
  }

  /** True while the journal cannot be written (a full disk): writes are refused. */
  get persistFailing(): boolean {
    return this.loop.storageFailure !== null;
  }

  softState(): SoftState {
    return this.coordinator.softState();
  }

  clusterState(): ClusterState {
    return this.coordinator.clusterState();
  }

  /** The master's last answer to this node's join request, if it was not accepted (null otherwise). */
  joinRefusal(): string | null {
    const outcome = this.coordinator.lastJoinOutcome();
    return outcome !== null && joinRemedies[outcome] !== undefined ? outcome : null;
  }

  /** Called after every drain in which the role, master, term or cluster state may have changed. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Called with the committed entries of each Ready once the transaction that applied them has committed (after the
   * writes waiting on them are settled). A listener must not throw; what it does with the entries is its own affair.
   */
  onApplied(listener: (entries: readonly Entry[]) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    // After pending I/O callbacks: every request and message of this turn joins one Ready (group commit).
    setImmediate(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    if (this.closed) return;
    this.proposeQueued();
    this.appliedInDrain = false;
    if (!this.loop.drain()) {
      // An earlier Ready of this drain may have applied entries: whoever waits on an index must still hear of it.
      this.reportChange(this.appliedInDrain);
      return;
    }
    this.loop.acknowledge();
    // Not while a Ready waits for its sync: a copy of the state machine could then hold applies the coordinator
    // has not advanced past, and compaction asks the coordinator for the cluster state at the copy's index.
    if (this.loop.storageFailure === null && !this.loop.syncing) this.compaction?.maybeCompact(this.appliedIndexValue);
    // The next group once this turn is over; while a Ready syncs, its return (the loop's resume) drains again.
    if (this.queue.length > 0 && !this.loop.syncing) this.scheduleDrain();
    this.reportJoinOutcome();
    this.reportChange(this.appliedInDrain);
  }

  /**
   * A Ready is committed (its sync may still be under way): memory follows the disk at once, before anything that
   * could throw, so that nothing committed is ever handed out (and applied) twice, and so that whoever reads the
   * database pairs it with the applied index it shows (a digest, a read's index, the change feed).
   */
  private afterWrite(ready: ClusterReady): void {
    if (ready.snapshot !== undefined) {
      this.appliedIndexValue = ready.snapshot.index;
      this.journalLastIndex = ready.snapshot.index;
      this.appliedInDrain = true;
    }
    if (ready.entries.length > 0) this.journalLastIndex = ready.entries[ready.entries.length - 1]!.index;
    if (ready.committed.length > 0) {
      this.appliedIndexValue = ready.committed[ready.committed.length - 1]!.index;
      this.appliedInDrain = true;
      if (this.applyFailure !== null && this.appliedIndexValue >= this.applyFailure.index) {
        this.log.info({ index: this.applyFailure.index }, `this node applies entries again (through index ${this.appliedIndexValue})`);
        this.applyFailure = null;
      }
    }
  }

  /** A Ready is sent and its writes settled: the payload bytes kept for it, snapshot bookkeeping, reads, listeners. */
  private afterReady(ready: ClusterReady): void {
    // Sent and applied: the bytes kept for these payloads have served (journal.ts, encodedPayloads).
    for (const entry of ready.committed) forgetPayloadBytes(entry.payload);
    if (ready.snapshot !== undefined) this.afterSnapshotInstall(ready.snapshot);
    for (const state of ready.readStates) this.reads.answered(state.id, state.index);
    if (ready.committed.length > 0) {
      for (const listener of this.appliedListeners) {
        try {
          listener(ready.committed);
        } catch (err) {
          this.log.error({ err }, 'a listener of applied entries failed');
        }
      }
    }
  }

  /** Tells the change listeners when entries were applied or the role, master or term moved. */
  private reportChange(applied: boolean): void {
    const soft = this.coordinator.softState();
    if (applied || soft.role !== this.lastSoft.role || soft.master !== this.lastSoft.master || soft.term !== this.lastSoft.term) {
      if (soft.role !== this.lastSoft.role || soft.master !== this.lastSoft.master) {
        this.log.info({ role: soft.role, master: soft.master, term: soft.term }, soft.role === 'master' ? 'elected master' : 'following');
      }
      this.lastSoft = soft;
      for (const listener of this.listeners) listener();
    }
  }

  /**
   * Entries about to be replaced were never committed (the core never truncates what it knows committed), so no
   * client was ever told they succeeded: typically a former master's tail that only it had. Say exactly what goes.
   */
  private reportDiscarded(fromIndex: number): void {
    // Appending after the last index replaces nothing: skip the count (a scan of the journal's tail per append).
    if (fromIndex > this.journalLastIndex) return;
    const count = this.journal.countFrom(fromIndex);
    if (count === 0) return;
    const sample = this.journal.read(fromIndex, discardedSampleMax).map((entry) => {
      const payload = entry.payload;
      const what = payload.kind === 'command' ? describeCommand(payload.data as Command) : payload.kind;
      return `${entry.index}/${entry.term} ${what}`;
    });
    this.log.warn(
      { fromIndex, toIndex: fromIndex + count - 1, count, entries: sample },
      `discarding ${count} journal entr${count === 1 ? 'y' : 'ies'} from index ${fromIndex} that never committed (no client was told they succeeded); the master's entries replace them`,
    );
  }

  /** A refused join is the operator's to fix: say what and how, once per change of answer. */
  private reportJoinOutcome(): void {
    const outcome = this.coordinator.lastJoinOutcome();
    if (outcome === this.lastJoinOutcome) return;
    this.lastJoinOutcome = outcome;
    const remedy = joinRemedies[outcome ?? ''];
    if (remedy !== undefined) this.log.error({ code: `JOIN_${outcome}`, outcome }, `the master refused to let this node join: ${remedy}`);
    else if (outcome === 'accepted') this.log.info('the master accepted this node\'s join request');
  }

  /**
   * The transaction rolled back (a full disk, most likely): nothing of the Ready is durable and nothing was sent.
   * The Ready loop refuses its writes with the error said here and restarts the coordinator from the disk; writes
   * persisted earlier keep waiting for their outcome. A cluster of one re-elects itself at the next tick and serves
   * again as soon as space returns, without a restart.
   */
  private onCommitFailed(err: unknown): ConclaveError {
    // The whole Ready rolled back, entries it applied included.
    this.content.rolledBack();
    if (err instanceof ApplyFailure) this.onApplyFailed(err);
    const error = storageError(err);
    // The first probe of the disk comes an election timeout from now, not at the next tick.
    this.storageProbedAtMs = performance.now();
    if (this.loop.storageFailure === null) this.log.error({ code: error.code, err: error }, 'cannot persist the journal; writes are refused until it can');
    return error;
  }

  /**
   * While the journal cannot be written, a probe write once per election timeout. Stored entries clear the failure
   * too (drain), but only a master sends entries: a full node does not campaign (CoordinationCore.setStorageFailing),
   * so where it is the only node that can lead, nobody would ever tell it that space returned and the cluster
   * would stay without a master (found by the simulator's full-disk fault). The probe is large enough
   * (storageProbeBytes) that a few pages SQLite reuses do not pass for free space.
   */
  private probeStorage(nowMs: number): void {
    // Only a full disk: a probe proves nothing about an entry that cannot be applied, or another storage error.
    if (this.loop.storageFailure?.code !== 'DISK_FULL' || nowMs - this.storageProbedAtMs < this.options.tickMs * this.coordinatorOptions.core.electionTimeoutTicks) return;
    this.storageProbedAtMs = nowMs;
    if (this.journal.probeWritable(storageProbeBytes)) this.loop.storageWritable();
  }

  private applyEntry(entry: Entry): ApplyResult | ConclaveError {
    if (entry.payload.kind !== 'command') return {}; // cluster-state entries: the coordinator applies them
    // The change feed's events of this entry carry its index (and count from 0 again if a Ready is retried).
    this.content.beginEntry(entry.index);
    try {
      return this.applyInSavepoint(entry.payload.data as Command);
    } catch (err) {
      // A refusal the content model decided is the same on every node: it is the entry's outcome.
      this.content.rolledBack();
      if (isConclaveError(err) && err.code !== 'STORAGE_ERROR' && err.code !== 'DISK_FULL') return err;
      if (isConclaveError(err)) throw err;
      // Anything else never becomes an outcome: skipping the entry would fork this node's state from the others'.
      throw new ApplyFailure(entry.index, err);
    }
  }

  // ---------------------------------------------------------------- progress problems

  /**
   * A committed entry failed to apply here (not a content refusal: a bug, or an entry from a version this node does
   * not understand). The Ready rolled back; the coordinator retries from disk at each tick and fails the same way,
   * so the node stays stuck at that index, never past it — and says so, again and again, until someone acts.
   */
  private onApplyFailed(failure: ApplyFailure): void {
    const now = performance.now();
    if (this.applyFailure === null || this.applyFailure.index !== failure.index) {
      this.applyFailure = { index: failure.index, sinceMs: now, detail: failure.message, loggedAtMs: -Infinity };
    }
    if (now - this.applyFailure.loggedAtMs < this.progressLogIntervalMs) return;
    this.applyFailure.loggedAtMs = now;
    this.log.error(
      { code: 'APPLY_FAILED', index: failure.index, err: failure.cause, stuckMs: Math.round(now - this.applyFailure.sinceMs) },
      `${failure.message}. This node will not skip it (its data would fork from the other nodes') and applies nothing after it. ` +
        'Remedy: run the version the master runs (a newer node wrote it), or report the error with this log line; removing the node from the cluster and adding it back empty also works.',
    );
  }

  /**
   * The network layer dropped a message from `from` that it could not decode (an append whose payload this version
   * cannot read). Dropping it stalls every write in the cluster; it is logged as an error at a bounded rate and
   * reported by health until appends are taken again (a later accepted append clears it: see receive).
   */
  refusedAppend(from: string, index: number | null, problem: string): void {
    const now = performance.now();
    const previous = this.appendRefusal;
    this.appendRefusal = { atMs: now, sinceMs: previous?.sinceMs ?? now, index, problem, loggedAtMs: previous?.loggedAtMs ?? -Infinity };
    if (now - this.appendRefusal.loggedAtMs < this.progressLogIntervalMs) return;
    this.appendRefusal.loggedAtMs = now;
    this.log.error(
      { code: 'APPEND_REFUSED', from, index, problem, refusingMs: Math.round(now - this.appendRefusal.sinceMs) },
      `this node cannot decode the entries ${from} sends (${problem}), so writes in the whole cluster stall until it can. ` +
        'Remedy: run the version the master runs on this node.',
    );
  }

  /**
   * On the master, follows the index every in-sync node has applied (what writes wait for). While it lags behind
   * the journal and has not moved for cluster.writeTimeoutMs, writes are stalled: every write then times out as
   * WRITE_OUTCOME_UNKNOWN, and health says so (a load balancer takes the node out; an operator sees why).
   */
  private observeWriteProgress(): void {
    const now = performance.now();
    if (!this.isWritingMaster()) {
      this.writeProgress = { acknowledgedIndex: 0, sinceMs: now };
      return;
    }
    const acknowledged = this.coordinator.acknowledgedIndex();
    if (acknowledged >= this.journalLastIndex || acknowledged > this.writeProgress.acknowledgedIndex) {
      this.writeProgress = { acknowledgedIndex: acknowledged, sinceMs: now };
      return;
    }
    const problem = this.writeProblem();
    if (problem?.kind !== 'stalled' || now - this.stalledLoggedAtMs < this.progressLogIntervalMs) return;
    this.stalledLoggedAtMs = now;
    this.log.error({ code: 'WRITES_STALLED', index: problem.index, stalledMs: Math.round(now - problem.sinceMs) }, problem.detail);
  }

  private get progressLogIntervalMs(): number {
    return this.options.progressProblemLogIntervalMs ?? progressProblemLogIntervalMsDefault;
  }

  /** A voting-only node can be a caretaker master that takes no writes: it has none to stall. */
  private isWritingMaster(): boolean {
    const roles = this.options.self.roles;
    return this.coordinator.softState().role === 'master' && roles.masterEligible && !roles.votingOnly;
  }

  /**
   * Why this node cannot make progress now, or null: a master whose writes are stalled, a node refusing the
   * master's appends, or a committed entry that cannot be applied here. /health/ready and the cluster status show it.
   */
  writeProblem(): WriteProblem | null {
    const now = performance.now();
    if (this.applyFailure !== null) {
      return { kind: 'apply-failed', index: this.applyFailure.index, sinceMs: this.applyFailure.sinceMs, detail: this.applyFailure.detail };
    }
    // A refusal counts while the master keeps sending what this node cannot take (it resends within a write timeout).
    const refusal = this.appendRefusal;
    if (refusal !== null && now - refusal.atMs <= this.options.writeTimeoutMs) {
      return { kind: 'refusing-appends', index: refusal.index, sinceMs: refusal.sinceMs, detail: `this node cannot decode the master's appends: ${refusal.problem}` };
    }
    if (this.ticker === null || !this.isWritingMaster()) return null;
    const acknowledged = this.coordinator.acknowledgedIndex();
    const stalledMs = now - this.writeProgress.sinceMs;
    if (acknowledged >= this.journalLastIndex || stalledMs <= this.options.writeTimeoutMs) return null;
    const state = this.coordinator.clusterState();
    const followers = this.coordinator.core.followerStates();
    const behind = state.inSync
      .filter((id) => id !== this.options.self.id && (followers.get(id)?.appliedIndex ?? 0) <= acknowledged)
      .map((id) => state.nodes.find((n) => n.id === id)?.name ?? id);
    return {
      kind: 'stalled',
      index: acknowledged + 1,
      sinceMs: this.writeProgress.sinceMs,
      detail:
        `writes are stalled: the entry at index ${acknowledged + 1} has waited ${Math.round(stalledMs)} ms (over cluster.writeTimeoutMs ${this.options.writeTimeoutMs}) ` +
        `for ${behind.length > 0 ? `in-sync node(s) ${behind.join(', ')}` : 'the in-sync nodes'} to apply it; check their logs (APPEND_REFUSED, APPLY_FAILED)`,
    };
  }

  // ---------------------------------------------------------------- snapshots: install

  /**
   * Called after a snapshot is installed here (the state machine was replaced by a snapshot's), once it is
   * committed: content and users are the snapshot's, but binaries they name may be missing from this node's blob
   * store — this is where blob replication fetches them. Returns the unsubscribe function.
   */
  onSnapshotInstalled(listener: (snapshot: Snapshot) => void): () => void {
    this.snapshotListeners.add(listener);
    return () => this.snapshotListeners.delete(listener);
  }

  /** This node's latest snapshot and the download under way, if any. */
  snapshotStatus(): SnapshotStatus {
    return { index: this.coordinator.core.latestSnapshot().index, download: this.snapshots?.fetcher.progress() ?? null };
  }

  /**
   * A snapshotRequest reaches the coordinator only once the file it names is verified on disk: the core would
   * report the install at once, and the Ready contract wants it done in that Ready. Until then the fetcher
   * downloads it and steps the message when done. Messages the core only answers (stale, or a snapshot this node
   * has already committed past) go through at once.
   */
  private snapshotFileReady(message: SnapshotRequest): boolean {
    const soft = this.coordinator.softState();
    if (message.term < soft.term || message.snapshot.index <= soft.commitIndex) return true;
    if (this.snapshots === undefined) {
      this.log.warn({ index: message.snapshot.index, from: message.from }, 'a snapshot was sent to a node that cannot take snapshots; ignored');
      return false;
    }
    const ref = fileRefOf(message.snapshot);
    if (this.holdsSnapshotFile(ref) || this.snapshots.fetcher.verifiedFile(ref) !== undefined) return true;
    this.snapshots.fetcher.offer(message);
    return false;
  }

  private holdsSnapshotFile(ref: SnapshotFileRef): boolean {
    const store = this.snapshots?.store;
    return store !== undefined && store.kept(ref.index)?.sha256 === ref.sha256 && store.hasFile(ref.index);
  }

  /** Moves the verified download into place and attaches it for persistAndApply; returns how to detach it. */
  private prepareSnapshotInstall(snapshot: Snapshot): () => void {
    const snapshots = this.snapshots;
    invariant(snapshots !== undefined, 'a snapshot to install on a node that cannot take snapshots');
    const ref = fileRefOf(snapshot);
    const downloaded = snapshots.fetcher.verifiedFile(ref);
    if (downloaded !== undefined) snapshots.store.adopt(downloaded, { index: ref.index, bytes: ref.bytes, sha256: ref.sha256 });
    invariant(this.holdsSnapshotFile(ref), `no verified file for the snapshot at ${ref.index} being installed`);
    return attachSnapshot(this.db, snapshots.store.pathOf(ref.index));
  }

  private detachSnapshot(detach: (() => void) | null): void {
    if (detach === null) return;
    try {
      detach();
    } catch (err) {
      this.log.error({ err }, 'cannot detach the snapshot file');
    }
  }

  private afterSnapshotInstall(snapshot: Snapshot): void {
    const snapshots = this.snapshots!;
    snapshots.store.keepOnly([snapshot.index]);
    snapshots.fetcher.installed(snapshot.index);
    this.compaction!.installed(snapshot.index);
    // Writes this node proposed as master up to the snapshot: whether they made it is not known here.
    this.log.info({ index: snapshot.index, term: snapshot.term, bytes: fileRefOf(snapshot).bytes }, 'installed a snapshot');
    for (const listener of this.snapshotListeners) {
      try {
        listener(snapshot);
      } catch (err) {
        this.log.error({ err }, 'a snapshot listener failed');
      }
    }
  }

  // ---------------------------------------------------------------- snapshots: compaction

  /** Compaction (compaction.ts) on snapshot files: written by a worker thread, compacted at in one transaction. */
  private snapshotCompaction(snapshots: RuntimeSnapshots): Compaction<SnapshotFileCopy> {
    const { store } = snapshots;
    return new Compaction<SnapshotFileCopy>(
      {
        latestSnapshotIndex: () => this.coordinator.core.latestSnapshot().index,
        hasCopy: (index) => store.hasFile(index),
        startCopy: (done, failed) => {
          const abort = new AbortController();
          const startedMs = Date.now();
          writeSnapshotFile(this.db, store.tmpDir, abort.signal).then(
            ({ path, info }) => {
              this.log.info({ index: info.index, bytes: info.bytes, ms: Date.now() - startedMs }, 'wrote a snapshot');
              done({ index: info.index, path, info });
            },
            (err: unknown) => {
              if (!this.closed) {
                this.log.error({ err, code: storageError(err).code }, `writing a snapshot failed; the journal is kept, and the snapshot tried again in ${snapshotCopyRetryDelayMs / 1000} s`);
              }
              failed(err);
            },
          );
          return () => abort.abort();
        },
        adopt: (copy) => store.adopt(copy.path, copy.info),
        discard: (copy) => removeDatabaseFile(copy.path),
        compactAt: (copy) => this.compactAt(store, copy.info),
        keepOnly: (index) => store.keepOnly([index]),
      },
      { compactionEntriesMin: snapshots.compactionEntriesMin, journalRetainEntries: snapshots.journalRetainEntries, copyRetryDelayMs: snapshotCopyRetryDelayMs },
      () => Date.now(),
      () => this.scheduleDrain(),
    );
  }

  /** The file holds applied index `file.index`: the coordinator and the journal drop everything up to it. */
  private compactAt(store: SnapshotStore, file: SnapshotFileInfo): void {
    const previous = this.coordinator.core.latestSnapshot().index;
    const term = this.coordinator.core.entryAt(file.index)?.term;
    invariant(term !== undefined, `no term at ${file.index} to compact at`);
    const ref: SnapshotFileRef = { ...file, term, holder: this.options.self.id };
    const snapshot = this.coordinator.compact(ref, file.index);
    // Committed without an fsync of its own, made durable by the WAL's fsync off the event loop: the commit deletes
    // some 10,000 entries, and its fsync on the loop held every node up for a third of a second at once (they
    // compact at about the same index). Until that fsync returns, a crash takes the compaction back and the node
    // restarts from the older snapshot with the entries after it, which the disk then still holds: so the older
    // snapshot files go only once it is durable (or with a later compaction's, which covers this one).
    this.db.pragma('synchronous = NORMAL');
    try {
      this.db.transaction(() => this.journal.compact(snapshot))();
    } catch (err) {
      // Memory is compacted, the disk is not: both files stay (a restart restores the older snapshot with the
      // entries after it, which the disk still holds).
      this.log.error({ err, code: storageError(err).code }, 'cannot store the compaction; the journal stays longer');
      return;
    } finally {
      this.db.pragma('synchronous = FULL');
    }
    this.walSync.sync(
      () => {
        if (this.closed || this.coordinator.core.latestSnapshot().index !== file.index) return;
        store.keepOnly([file.index]);
        this.log.info({ index: file.index, term, previous, appliedIndex: this.appliedIndexValue }, 'compacted the journal');
      },
      (err) => this.walSyncFailed(err),
    );
  }

  private walSyncFailed(err: NodeJS.ErrnoException): never {
    this.log.error({ err }, 'the fsync of the write-ahead log failed; the node stops (a failed fsync is not retried)');
    throw storageError(err);
  }

  private unconfirmed(index: number, why: string): ConclaveError {
    return new ConclaveError(
      'WRITE_OUTCOME_UNKNOWN',
      `The write is committed at index ${index} and durable, but ${why} before every in-sync node confirmed it. Read it back with X-Conclave-Min-Index: ${index} rather than retrying.`,
      { index, committed: true },
    );
  }
}

// The coordination layer's fixed limits (CoreOptions, CoordinatorOptions), named here rather than as literals.
/** Most entries in one append; appendBytesMax bounds it first in practice. */
const appendEntriesMax = 4096;
/** Appends with entries in flight to one follower before the master waits for an answer. */
const inflightAppendsMax = 4;
/** Discovery probes every few heartbeats, forgets a peer's information after a few election timeouts. */
const probeIntervalHeartbeats = 3;
const discoveryInfoElectionTimeouts = 4;
/** Peers discovery keeps track of at most (seeds, members, and whoever dialled in). */
const discoveredPeersMax = 256;
/** A node that asked to join asks again after this many heartbeats without an answer. */
const joinRetryHeartbeats = 5;
/** Operators' and jobs' cluster-state changes queued on the master at most; more are refused (OVERLOADED). */
const pendingClusterChangesMax = 64;

/** What probeStorage writes to see whether the disk has room again: more than a few reused pages, little I/O. */
const storageProbeBytes = 1024 * 1024;

/** An entry's size on the wire: its payload's bytes (encoded once, see payloadBytes) and the index, term and framing. */
function entryBytes(entry: Entry): number {
  return payloadBytes(entry.payload).length + 32;
}
