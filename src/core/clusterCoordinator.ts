import { invariant } from '../errors/catalogue.js';
import { bootstrapVoters, expectedVoters, type BootstrapMethod } from './bootstrap.js';
import {
  isCoreMessage,
  type ClusterMessage,
  type DiscoveryInfo,
  type JoinOutcome,
  type JoinRequest,
} from './clusterMessages.js';
import {
  applyClusterEntry,
  emptyClusterState,
  isMember,
  memberIds,
  restoredClusterState,
  validateJoin,
  type ClusterChange,
  type ClusterState,
  type NodeDescriptor,
} from './clusterState.js';
import { isJobChange, jobChangeProblem } from './clusterJobs.js';
import { isWebhookChange, webhookChangeProblem } from './clusterWebhooks.js';
import { CoordinationCore, type CoreOptions, type ProposeOutcome, type RestoredState } from './coordinationCore.js';
import type { Ready, Snapshot, SoftState } from './types.js';
import { reconfigure } from './votingConfiguration.js';

/**
 * The cluster layer: the coordination core plus the cluster state it replicates, discovery, bootstrap, joins,
 * and the master's duties. Pure like the core: ticks and messages in, a ClusterReady out.
 *
 * The master's duties, one cluster-state change at a time (the next starts only once the previous one is
 * committed and applied by every reachable node, or `publishTimeoutTicks` after it was proposed):
 * 1. name the cluster (`formed`, with a fresh UUID) — once;
 * 2. take members that stopped answering out of the in-sync set;
 * 3. let validated joiners in;
 * 4. move the voting configuration to what the CrateDB rules say for the live eligible members
 *    (`reconfigure`), through the core's joint configuration;
 * 5. put members that caught up back into the in-sync set;
 * 6. operators' changes (voting exclusions, settings, removals), in the order they came.
 */
export interface CoordinatorOptions {
  readonly self: NodeDescriptor;
  readonly clusterName: string;
  readonly bootstrap: BootstrapMethod;
  readonly core: Omit<CoreOptions, 'id' | 'canBeMaster' | 'random' | 'injectedBug'>;
  /** Ticks between discovery probes while no master is known. */
  readonly probeIntervalTicks: number;
  /** A peer's probe answer older than this is forgotten (it may have restarted, or gone). */
  readonly discoveryInfoTicksMax: number;
  /** Most peers remembered by discovery. */
  readonly discoveredPeersMax: number;
  /** Ticks between join attempts of a node that is not (yet) a member. */
  readonly joinRetryTicks: number;
  /** A member silent this long no longer counts as live for the voting configuration. */
  readonly nodeFailureTimeoutTicks: number;
  /**
   * A member silent this long is taken out of the in-sync set. Until then (and until its read lease has run out)
   * the master acknowledges no write it has not applied: writes wait up to this long when an in-sync node dies.
   */
  readonly inSyncTimeoutTicks: number;
  /** The master waits at most this long for every reachable node to apply a change before starting the next. */
  readonly publishTimeoutTicks: number;
  /** Most joins and operator changes waiting on the master. */
  readonly pendingChangesMax: number;
  readonly random: CoreOptions['random'];
  /** Test-only: breaks one rule on purpose (a core rule, or one of the cluster layer). Never set in production. */
  readonly injectedBug?: CoordinatorBug;
}

/** The rules the simulator proves it would notice broken: the core's, the voting exclusions and the acknowledgement rule here. */
export type CoordinatorBug = NonNullable<CoreOptions['injectedBug']> | 'ignoreVotingExclusions' | 'acknowledgeBeforeInSyncApplied';

/** Every injectable bug, for the simulator's and the chaos harness's command lines. */
export const coordinatorBugs: readonly CoordinatorBug[] = [
  'quorumIsHalf',
  'voteForStaleCandidate',
  'commitBeforeQuorum',
  'skippedTicksStopTheClock',
  'stickyOnlyAboveOwnTerm',
  'countOwnUnpersistedEntries',
  'reportUnsyncedMatch',
  'ignoreVotingExclusions',
  'acknowledgeBeforeInSyncApplied',
];

/** The injectable bugs that live in the core (the others are the coordinator's own). */
const coreBugs: readonly CoordinatorBug[] = ['quorumIsHalf', 'voteForStaleCandidate', 'commitBeforeQuorum', 'skippedTicksStopTheClock', 'stickyOnlyAboveOwnTerm', 'countOwnUnpersistedEntries', 'reportUnsyncedMatch'];
function isCoreBug(bug: CoordinatorBug | undefined): bug is NonNullable<CoreOptions['injectedBug']> {
  return bug !== undefined && coreBugs.includes(bug);
}

/** What a coordinator snapshot holds: the cluster state and the state machine's own data. */
export interface CoordinatorSnapshotData {
  readonly clusterState: ClusterState;
  readonly stateMachine: unknown;
}

export interface ClusterReady extends Omit<Ready, 'messages'> {
  readonly messages: readonly ClusterMessage[];
  /**
   * When present, the node's bootstrap view grew: persist it with the hard state, before any message is sent
   * (a view reported and then forgotten in a crash could let two different first configurations be agreed).
   */
  readonly bootstrapView?: readonly string[];
}

/** What a coordinator restarts from: the core's durable state and its own bootstrap view. */
export interface CoordinatorRestoredState extends RestoredState {
  readonly bootstrapView?: readonly string[];
}

export type ChangeOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'notMaster' | 'busy'; readonly master: string | null }
  /** A change the cluster state's bounds would leave without effect (too many jobs, too large a progress). */
  | { readonly ok: false; readonly reason: 'refused'; readonly problem: string };

interface DiscoveredPeer {
  info: DiscoveryInfo;
  heardAtTick: number;
}

interface Publication {
  /** The journal index of the change. */
  readonly index: number;
  readonly proposedAtTick: number;
}

const uuidAlphabet = '0123456789abcdef';

export class ClusterCoordinator {
  readonly core: CoordinationCore;
  /** This node as it describes itself; its addresses may change (a restart elsewhere, a port picked at start). */
  private self: NodeDescriptor;
  private state: ClusterState;
  private appliedIndex: number;
  private ticks = 0;
  /** The shortest gap of ticks due at once that counts as having been held up (catchUp). */
  private readonly heldUpTicksMin: number;
  private readonly discovered = new Map<string, DiscoveredPeer>();
  /** Expect N: the eligible nodes without a journal this node has ever seen (itself included); only grows. */
  private bootstrapView: string[];
  private bootstrapViewDirty = false;
  /** Expect N: the latest view each peer reported (any age: a node's reports only grow). */
  private readonly viewReports = new Map<string, readonly string[]>();
  private discoveryPeers: readonly string[] = [];
  private lastProbeTick = -Infinity;
  private lastJoinTick = -Infinity;
  /** The last join answer this node had, for status (a refusal names what to fix). */
  private lastJoinOutcomeValue: JoinOutcome | null = null;
  private outbox: ClusterMessage[] = [];
  private lastCoreReady: Ready | null = null;
  /** On a master: the term it was elected in, the tick it was, and the last change it proposed. */
  private masterTerm = -1;
  private masterSinceTick = 0;
  private publication: Publication | null = null;
  private readonly pendingJoins = new Map<string, JoinRequest>();
  private memberCheck: { state: ClusterState | null; self: NodeDescriptor | null; current: boolean } = { state: null, self: null, current: false };
  /** The highest index acknowledgedIndex() has returned in this master's reign (see updateLeaseHolders). */
  private acknowledgedHighWater = 0;
  /** The index at which each member last entered the in-sync set, as applied here (see updateLeaseHolders). */
  private readonly inSyncAddedAt = new Map<string, number>();
  private readonly pendingOperatorChanges: ClusterChange[] = [];

  constructor(
    private readonly options: CoordinatorOptions,
    restored: CoordinatorRestoredState,
  ) {
    this.self = options.self;
    invariant(options.nodeFailureTimeoutTicks >= options.core.electionTimeoutTicks, 'a node fails no faster than an election times out');
    invariant(options.inSyncTimeoutTicks >= options.core.electionTimeoutTicks, 'a node leaves the in-sync set no faster than an election times out');
    this.heldUpTicksMin = Math.max(2, Math.ceil(options.core.electionTimeoutTicks / 2));
    this.core = new CoordinationCore(
      {
        ...options.core,
        id: options.self.id,
        canBeMaster: options.self.roles.masterEligible && !options.self.roles.votingOnly,
        random: options.random,
        ...(isCoreBug(options.injectedBug) ? { injectedBug: options.injectedBug } : {}),
      },
      restored,
    );
    const snapshotData = restored.snapshot?.data as CoordinatorSnapshotData | undefined;
    this.state = snapshotData === undefined ? emptyClusterState : restoredClusterState(snapshotData.clusterState);
    this.appliedIndex = restored.snapshot?.index ?? 0;
    // The cluster state is not stored apart: it is rebuilt from the snapshot and the applied journal.
    for (let index = this.appliedIndex + 1; index <= restored.appliedIndex; index++) {
      const entry = this.core.entryAt(index);
      invariant(entry !== undefined, `applied entry ${index} missing from the journal`);
      this.state = applyClusterEntry(this.state, entry);
    }
    this.appliedIndex = restored.appliedIndex;
    this.core.setReplicas(memberIds(this.state));
    const self = options.self;
    this.bootstrapView = [...new Set([...(restored.bootstrapView ?? []), ...(self.roles.masterEligible ? [self.id] : [])])].sort();
  }

  // ---------------------------------------------------------------- inputs

  /**
   * Changes how this node describes itself (its addresses). A member whose descriptor in the cluster state differs
   * asks to join again, which updates it; the roles and the id never change.
   */
  updateSelf(descriptor: NodeDescriptor): void {
    invariant(descriptor.id === this.self.id && JSON.stringify(descriptor.roles) === JSON.stringify(this.self.roles), 'a node changes its addresses, never its id or roles');
    this.self = descriptor;
    this.lastJoinTick = -Infinity;
  }

  /** This node as it describes itself now. */
  descriptor(): NodeDescriptor {
    return this.self;
  }

  /** The ids discovery should probe (from seed hosts, DNS): the runtime keeps this current. */
  setDiscoveryPeers(ids: readonly string[]): void {
    this.discoveryPeers = ids.filter((id) => id !== this.self.id);
  }

  tick(): void {
    this.ticks++;
    this.core.tick();
    const soft = this.core.softState();
    if (soft.master === null) this.discover();
    else if (!this.isCurrentMember()) this.maybeJoin(soft.master);
    if (soft.role === 'master') this.masterDuties(soft);
    this.updateLeaseHolders();
  }

  /**
   * Delivers `ticks` ticks that fell due at once (the runtime's clock catching up). A gap of half an election timeout
   * or more means this node was held up (stopped, its event loop blocked) with messages unread: all but the last
   * tick are skipped (core skipTicks: the clock moves, no timeout counts them). A shorter gap — a late timer, a busy
   * event loop — is ticked in full: skipping those too stretched every timeout of a loaded node (a failover bench
   * trial took 2.6 s when a busy follower kept refusing pre-votes for 1.6 s after the master had stopped).
   */
  catchUp(ticks: number): void {
    if (ticks <= 0) return;
    if (ticks >= this.heldUpTicksMin) {
      this.core.skipTicks(ticks - 1);
      this.tick();
      return;
    }
    for (let i = 0; i < ticks; i++) this.tick();
  }

  step(message: ClusterMessage): void {
    invariant(message.to === this.self.id, `message for ${message.to} delivered to ${this.self.id}`);
    if (isCoreMessage(message)) {
      this.core.step(message);
      if (message.type === 'appendResponse') {
        // The answer may complete a publication: start the next change now rather than at the next tick (after a
        // failover, taking the old master out of the in-sync set is what lets writes be acknowledged again).
        const soft = this.core.softState();
        if (soft.role === 'master' && this.publication !== null && this.masterTerm === soft.term) this.masterDuties(soft);
        this.updateLeaseHolders();
      }
      return;
    }
    switch (message.type) {
      case 'probeRequest':
        this.remember(message.info);
        this.send({ type: 'probeResponse', from: this.self.id, to: message.from, info: this.discoveryInfo() });
        return this.maybeBootstrap();
      case 'probeResponse':
        this.remember(message.info);
        return this.maybeBootstrap();
      case 'joinRequest':
        return this.onJoinRequest(message);
      case 'joinResponse':
        this.lastJoinOutcomeValue = message.outcome;
        // Redirected: try the master named at once rather than at the next retry.
        if (message.outcome === 'notMaster' && message.master !== null && message.master !== message.from) {
          this.lastJoinTick = -Infinity;
          this.maybeJoin(message.master);
        }
        return;
    }
  }

  /** A content command (or anything for the state machine above). */
  propose(data: unknown): ProposeOutcome {
    return this.core.propose(data);
  }

  /** Asks for a read index (see CoordinationCore.readIndex); the answer comes in a Ready's readStates. */
  readIndex(id: string): void {
    this.core.readIndex(id);
  }

  /** True while a sequential read may be served from this node's own state (see lease.ts). */
  /** See CoordinationCore.setStorageFailing. */
  setStorageFailing(failing: boolean): void {
    this.core.setStorageFailing(failing);
  }

  hasReadLease(): boolean {
    return this.core.hasReadLease();
  }

  /**
   * On a master: the highest applied index it may acknowledge to clients — applied here, by every in-sync member,
   * and by every member whose read lease may still run (lease.ts, point 4). 0 elsewhere.
   */
  acknowledgedIndex(): number {
    if (this.core.softState().role !== 'master' || !this.isRealMaster()) return 0;
    let index = this.appliedIndex;
    if (this.options.injectedBug !== 'acknowledgeBeforeInSyncApplied') {
      const followers = this.core.followerStates();
      for (const id of this.state.inSync) {
        if (id !== this.self.id) index = Math.min(index, followers.get(id)?.appliedIndex ?? 0);
      }
      for (const lease of this.core.leasesInForce().values()) index = Math.min(index, lease.appliedIndex);
    }
    // What the runtime may acknowledge now stays acknowledged: a follower that reports less later (a new process
    // that lost applies not yet fsynced) gets no lease until it has applied this much again (updateLeaseHolders).
    if (index > this.acknowledgedHighWater) {
      this.acknowledgedHighWater = index;
      this.updateLeaseHolders();
    }
    return index;
  }

  /** An operator's change (voting exclusions, settings, removing a node) or a job's; queued on the master. */
  proposeClusterChange(change: ClusterChange): ChangeOutcome {
    const soft = this.core.softState();
    if (soft.role !== 'master' || !this.isRealMaster()) return { ok: false, reason: 'notMaster', master: soft.master };
    if (this.pendingOperatorChanges.length + this.pendingJoins.size >= this.options.pendingChangesMax) {
      return { ok: false, reason: 'busy', master: soft.master };
    }
    if (isJobChange(change)) {
      const problem = jobChangeProblem(this.state.jobs, change);
      if (problem !== null) return { ok: false, reason: 'refused', problem };
    }
    if (isWebhookChange(change)) {
      const problem = webhookChangeProblem(this.state.webhooks, change);
      if (problem !== null) return { ok: false, reason: 'refused', problem };
    }
    this.pendingOperatorChanges.push(change);
    return { ok: true };
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    return this.outbox.length > 0 || this.bootstrapViewDirty || this.core.hasReady();
  }

  ready(): ClusterReady {
    const core = this.core.ready();
    this.lastCoreReady = core;
    const messages = core.messages.map((m) => (m.type === 'snapshotRequest' ? { ...m, sender: this.self } : m));
    return {
      ...core,
      messages: [...messages, ...this.outbox],
      ...(this.bootstrapViewDirty ? { bootstrapView: [...this.bootstrapView] } : {}),
    };
  }

  /**
   * The runtime has written `ready` — installed its snapshot, applied its committed entries — and may not have
   * synced it yet: the applied state follows at once (CoordinationCore.applied), so that the master acknowledges
   * what it applied without waiting for the sync of the entries that came with it. Then advance, once durable.
   * Returns what the runtime sends at once, before the sync: a follower's applied report that vouches only for
   * what is already durable (CoordinationCore.applied).
   */
  applied(ready: ClusterReady): readonly ClusterMessage[] {
    const core = this.lastCoreReady;
    invariant(core !== null, 'applied without ready');
    const membersBefore = memberIds(this.state).join(',');
    if (ready.snapshot !== undefined) {
      this.state = restoredClusterState((ready.snapshot.data as CoordinatorSnapshotData).clusterState);
      this.appliedIndex = ready.snapshot.index;
    }
    for (const entry of ready.committed) {
      invariant(entry.index === this.appliedIndex + 1, `cluster state at ${this.appliedIndex} asked to apply ${entry.index}`);
      this.state = applyClusterEntry(this.state, entry);
      this.appliedIndex = entry.index;
      const change = entry.payload.kind === 'cluster' ? (entry.payload.change as ClusterChange) : null;
      if (change?.type === 'inSyncChanged') for (const id of change.added) this.inSyncAddedAt.set(id, entry.index);
    }
    const early = this.core.applied(core);
    if (memberIds(this.state).join(',') !== membersBefore) this.core.setReplicas(memberIds(this.state));
    this.updateLeaseHolders();
    return early;
  }

  /** Called once everything in the last ready() has been persisted (applied() first), sent and applied. */
  advance(ready: ClusterReady): void {
    const core = this.lastCoreReady;
    invariant(core !== null, 'advance without ready');
    this.lastCoreReady = null;
    this.outbox = this.outbox.slice(ready.messages.length - core.messages.length);
    if (ready.bootstrapView !== undefined && ready.bootstrapView.length === this.bootstrapView.length) this.bootstrapViewDirty = false;
    this.core.advance(core);
    this.updateLeaseHolders();
  }

  /**
   * The state machine made `stateMachine` durable as of `index` (by default the applied index): compact the journal
   * up to it. The snapshot carries the cluster state at that index, rebuilt from the previous snapshot and the
   * entries after it when the index is below the applied one.
   */
  compact(stateMachine: unknown, index = this.appliedIndex): Snapshot {
    const data: CoordinatorSnapshotData = { clusterState: this.clusterStateAt(index), stateMachine };
    return this.core.compact(data, index);
  }

  private clusterStateAt(index: number): ClusterState {
    if (index === this.appliedIndex) return this.state;
    invariant(index < this.appliedIndex, `cluster state asked at ${index}, past the applied index ${this.appliedIndex}`);
    const snapshot = this.core.latestSnapshot();
    invariant(index >= snapshot.index, `cluster state asked at ${index}, below the snapshot at ${snapshot.index}`);
    let state = snapshot.index === 0 ? emptyClusterState : restoredClusterState((snapshot.data as CoordinatorSnapshotData).clusterState);
    for (let i = snapshot.index + 1; i <= index; i++) {
      const entry = this.core.entryAt(i);
      invariant(entry !== undefined, `entry ${i} missing from the journal`);
      state = applyClusterEntry(state, entry);
    }
    return state;
  }

  clusterState(): ClusterState {
    return this.state;
  }

  softState(): SoftState {
    return this.core.softState();
  }

  lastJoinOutcome(): JoinOutcome | null {
    return this.lastJoinOutcomeValue;
  }

  discoveryInfo(): DiscoveryInfo {
    const soft = this.core.softState();
    return {
      node: this.self,
      clusterName: this.options.clusterName,
      clusterUuid: this.state.clusterUuid,
      hasJournal: this.hasJournal(),
      master: soft.master,
      term: soft.term,
      unformedEligible: this.hasJournal() ? [] : this.bootstrapView,
    };
  }

  // ---------------------------------------------------------------- discovery, bootstrap, joining

  /** A member, and described in the cluster state as it describes itself now. */
  private isCurrentMember(): boolean {
    // Asked at every tick: remembered per (state, descriptor) pair, both immutable objects.
    if (this.memberCheck.state !== this.state || this.memberCheck.self !== this.self) {
      const member = this.state.nodes.find((n) => n.id === this.self.id);
      this.memberCheck = { state: this.state, self: this.self, current: member !== undefined && JSON.stringify(member) === JSON.stringify(this.self) };
    }
    return this.memberCheck.current;
  }

  private hasJournal(): boolean {
    return this.core.lastIndex() > 0;
  }

  private discover(): void {
    if (this.ticks - this.lastProbeTick >= this.options.probeIntervalTicks) {
      this.lastProbeTick = this.ticks;
      const info = this.discoveryInfo();
      for (const to of this.discoveryPeers) this.send({ type: 'probeRequest', from: this.self.id, to, info });
    }
    this.maybeBootstrap();
    // No master heard from, but a peer follows one: join it. Even a node that believes it is a member asks — it
    // may have been removed without hearing of it (replication to it stops with that very change); the master
    // answers a current member with 'accepted' and changes nothing.
    const master = this.knownMaster();
    if (master !== null) this.maybeJoin(master);
  }

  private remember(info: DiscoveryInfo): void {
    if (info.node.id === this.self.id) return;
    // Another cluster's nodes are not ours to bootstrap or join with (the transport handshake refuses them too).
    if (info.clusterName !== this.options.clusterName) return;
    if (!this.discovered.has(info.node.id) && this.discovered.size >= this.options.discoveredPeersMax) {
      // Full: forget the stalest peer rather than ignore a new one (the seed list may have moved on).
      let stalest: string | null = null;
      let stalestTick = Infinity;
      for (const [id, peer] of this.discovered) {
        if (peer.heardAtTick < stalestTick) {
          stalest = id;
          stalestTick = peer.heardAtTick;
        }
      }
      if (stalest !== null) this.discovered.delete(stalest);
    }
    this.discovered.set(info.node.id, { info, heardAtTick: this.ticks });
    if (!info.hasJournal && info.node.roles.masterEligible) this.core.noteVoterWithoutJournal(info.node.id);
    if (!info.hasJournal && info.node.roles.masterEligible) {
      if (!this.viewReports.has(info.node.id) && this.viewReports.size >= this.options.discoveredPeersMax) return;
      this.viewReports.set(info.node.id, info.unformedEligible);
      if (!this.hasJournal() && !this.bootstrapView.includes(info.node.id) && this.bootstrapView.length < this.options.discoveredPeersMax) {
        this.bootstrapView = [...this.bootstrapView, info.node.id].sort();
        this.bootstrapViewDirty = true;
      }
    }
  }

  private freshPeers(): DiscoveryInfo[] {
    const fresh: DiscoveryInfo[] = [];
    for (const [id, peer] of this.discovered) {
      if (this.ticks - peer.heardAtTick > this.options.discoveryInfoTicksMax) this.discovered.delete(id);
      else fresh.push(peer.info);
    }
    return fresh.sort((a, b) => (a.node.id < b.node.id ? -1 : 1));
  }

  /** The master a peer of our cluster follows, preferring the highest term; null if nobody knows one. */
  private knownMaster(): string | null {
    let best: DiscoveryInfo | null = null;
    for (const info of this.freshPeers()) {
      if (info.master === null || !info.hasJournal) continue;
      if (this.state.clusterUuid !== null && info.clusterUuid !== null && info.clusterUuid !== this.state.clusterUuid) continue;
      if (best === null || info.term > best.term) best = info;
    }
    return best?.master ?? null;
  }

  private maybeBootstrap(): void {
    if (this.hasJournal() || this.core.softState().term !== 0) return;
    const method = this.options.bootstrap;
    const peers = this.freshPeers();
    // The view must be durable before we bootstrap on it, as before we report it.
    if (method.kind === 'expect' && this.bootstrapViewDirty) return;
    const voters =
      method.kind === 'expect'
        ? expectedVoters(this.self, method.count, this.bootstrapView, this.viewReports, peers.some((p) => p.hasJournal))
        : bootstrapVoters(this.self, method, peers);
    if (voters === null) return;
    this.core.bootstrap(voters);
  }

  private maybeJoin(master: string): void {
    if (master === this.self.id) return;
    if (this.ticks - this.lastJoinTick < this.options.joinRetryTicks) return;
    this.lastJoinTick = this.ticks;
    this.send({
      type: 'joinRequest',
      from: this.self.id,
      to: master,
      node: this.self,
      clusterName: this.options.clusterName,
      clusterUuid: this.state.clusterUuid,
    });
  }

  private onJoinRequest(request: JoinRequest): void {
    const soft = this.core.softState();
    const answer = (outcome: JoinOutcome) =>
      this.send({ type: 'joinResponse', from: this.self.id, to: request.from, outcome, master: soft.master });
    if (soft.role !== 'master' || !this.isRealMaster()) return answer('notMaster');
    if (this.state.clusterUuid === null) return answer('notFormed');
    const refusal = validateJoin({ state: this.state, joiner: request.node, joinerClusterName: request.clusterName, joinerClusterUuid: request.clusterUuid });
    if (refusal !== null) return answer(refusal);
    const member = this.state.nodes.find((n) => n.id === request.node.id);
    if (member !== undefined && JSON.stringify(member) === JSON.stringify(request.node)) return answer('accepted');
    if (!this.pendingJoins.has(request.node.id) && this.pendingJoins.size + this.pendingOperatorChanges.length >= this.options.pendingChangesMax) {
      return answer('busy');
    }
    this.pendingJoins.set(request.node.id, request);
    answer('accepted');
  }

  // ---------------------------------------------------------------- the master's duties

  /**
   * Read leases go to in-sync members that have applied everything this master may have acknowledged without them:
   * whatever earlier masters acknowledged (below the first entry of this term) and whatever was acknowledged
   * while they were out of the in-sync set (below the entry that put them back). From then on, no write is
   * acknowledged before they apply it.
   */
  private updateLeaseHolders(): void {
    const termStart = this.core.masterTermStartIndex();
    if (termStart === 0 || !this.isRealMaster()) return this.core.setLeaseHolders([], 0);
    const followers = this.core.followerStates();
    const holders = this.state.inSync.filter((id) => {
      if (id === this.self.id) return false;
      const floor = Math.max(termStart, this.inSyncAddedAt.get(id) ?? 0);
      return (followers.get(id)?.appliedIndex ?? 0) >= Math.max(floor, this.acknowledgedHighWater);
    });
    this.core.setLeaseHolders(holders, this.acknowledgedHighWater);
  }

  /** A master that may take proposals: not a voting-only caretaker. */
  private isRealMaster(): boolean {
    return !this.self.roles.votingOnly && this.self.roles.masterEligible;
  }

  private masterDuties(soft: SoftState): void {
    if (!this.isRealMaster()) return;
    if (this.masterTerm !== soft.term) {
      // Newly elected: nothing of an earlier reign carries over; the noop it appended is the first publication.
      this.masterTerm = soft.term;
      this.masterSinceTick = this.ticks;
      // Earlier masters' acknowledgements lie below this term's first entry, which lease holders must have applied.
      this.acknowledgedHighWater = 0;
      this.publication = { index: soft.lastIndex, proposedAtTick: this.ticks };
      this.pendingJoins.clear();
      this.pendingOperatorChanges.length = 0;
    }
    if (!this.publicationDone(soft)) return;
    this.publication = null;
    const change = this.nextChange(soft);
    if (change === null) return;
    if (change === 'reconfigure') {
      const voters = this.wantedVoters(soft);
      const outcome = this.core.proposeConfiguration(voters);
      if (outcome.ok) this.publication = { index: outcome.index, proposedAtTick: this.ticks };
      return;
    }
    const outcome = this.core.propose(change, 'cluster');
    if (!outcome.ok) return;
    this.publication = { index: outcome.index, proposedAtTick: this.ticks };
    if (change === this.pendingOperatorChanges[0]) this.pendingOperatorChanges.shift();
  }

  /** The previous change is committed and applied by every reachable node (or the publish timeout passed). */
  private publicationDone(soft: SoftState): boolean {
    if (soft.configuration.next !== undefined) return false; // the core finishes a joint change by itself
    const publication = this.publication;
    if (publication === null) return true;
    if (soft.commitIndex < publication.index || this.appliedIndex < publication.index) return false;
    if (this.ticks - publication.proposedAtTick >= this.options.publishTimeoutTicks) return true;
    // Nodes still catching up (not in sync) do not hold the cluster back: they apply the change when they get there.
    // Nor do in-sync nodes that failed (stalled: a full disk; silent), which the next change takes out of the set:
    // a full node still answers heartbeats, and waiting the publish timeout for it held back its removal while
    // every write waited for it (a new master's first publication is its noop; CRX scenario 6a).
    const failed = this.failedInSync();
    for (const [id, follower] of this.core.followerStates()) {
      const reachable = follower.ackSeq > 0 && follower.silentTicks < this.options.core.electionTimeoutTicks;
      if (reachable && this.state.inSync.includes(id) && !failed.includes(id) && follower.appliedIndex < publication.index) return false;
    }
    return true;
  }

  /**
   * In-sync members to take out: silent for the in-sync timeout, stalled as long (entries unanswered or unapplied:
   * a full disk, a saturated link), or — a few heartbeats into this master's reign — not answering it at all:
   * typically the previous master, just killed. Writes wait for every in-sync member, and it holds no lease from
   * this master, so no read depends on it (lease.ts). If it is merely slow, it is put back once it caught up.
   */
  private failedInSync(): string[] {
    const self = this.self;
    const unanswered = (id: string) =>
      this.ticks - this.masterSinceTick >= this.options.core.heartbeatIntervalTicks && (this.core.followerStates().get(id)?.ackSeq ?? 0) === 0;
    return this.state.inSync.filter(
      (id) => id !== self.id && (!this.isLive(id, this.options.inSyncTimeoutTicks) || unanswered(id) || this.core.stalledTicks(id) >= this.options.inSyncTimeoutTicks),
    );
  }

  private isLive(id: string, timeoutTicks = this.options.nodeFailureTimeoutTicks): boolean {
    if (id === this.self.id) return true;
    const follower = this.core.followerStates().get(id);
    return follower !== undefined && follower.silentTicks < timeoutTicks;
  }

  private nextChange(soft: SoftState): ClusterChange | 'reconfigure' | null {
    const self = this.self;
    const state = this.state;
    if (state.clusterUuid === null) {
      return { type: 'formed', clusterName: this.options.clusterName, clusterUuid: this.newUuid(), master: self };
    }
    const failed = this.failedInSync();
    if (failed.length > 0) return { type: 'inSyncChanged', added: [], removed: failed };
    // The master's own addresses before anyone else's join: members forward writes and fetch blobs at the address
    // the cluster state names, and a master restored elsewhere from a copy of its data is not there any more.
    if (!this.isCurrentMember()) return { type: 'nodeJoined', node: self };
    for (const [id, request] of this.pendingJoins) {
      this.pendingJoins.delete(id);
      // Validated again: the state may have changed since the request came.
      const refusal = validateJoin({ state, joiner: request.node, joinerClusterName: request.clusterName, joinerClusterUuid: request.clusterUuid });
      const member = state.nodes.find((n) => n.id === id);
      if (refusal === null && (member === undefined || JSON.stringify(member) !== JSON.stringify(request.node))) {
        return { type: 'nodeJoined', node: request.node };
      }
    }
    if (!sameMembers(this.wantedVoters(soft), [...soft.configuration.current])) return 'reconfigure';
    const caughtUp = state.nodes
      .map((n) => n.id)
      .filter(
        (id) =>
          !state.inSync.includes(id) &&
          this.isLive(id) &&
          // Not stalled either: a member taken out because it stopped applying (a full disk) would otherwise be put
          // back at once, its match index being current, and every write would wait for it again.
          (id === self.id || ((this.core.followerStates().get(id)?.matchIndex ?? 0) >= soft.commitIndex && this.core.stalledTicks(id) < this.options.inSyncTimeoutTicks)),
      );
    if (caughtUp.length > 0) return { type: 'inSyncChanged', added: caughtUp, removed: [] };
    // Taken off the queue only once proposed (see masterDuties): a proposal refused for back-pressure is retried.
    return this.pendingOperatorChanges[0] ?? null;
  }

  /** The voting configuration the rules ask for, given who is live now. */
  private wantedVoters(soft: SoftState): string[] {
    // A new voter must be in sync: a voter far behind would count towards quorums it cannot help make.
    const liveEligible = new Set<string>();
    for (const node of this.state.nodes) {
      const candidate = soft.configuration.current.has(node.id) || this.state.inSync.includes(node.id);
      if (node.roles.masterEligible && candidate && this.isLive(node.id)) liveEligible.add(node.id);
    }
    // Voters of the bootstrap that have not joined yet count as live for a grace period, so that the first
    // master does not shrink the configuration while they are still on their way in.
    if (this.ticks - this.masterSinceTick < this.options.nodeFailureTimeoutTicks) {
      for (const id of soft.configuration.current) if (!isMember(this.state, id) && this.isLive(id)) liveEligible.add(id);
    }
    const wanted = reconfigure({
      liveEligible,
      excluded: new Set(this.options.injectedBug === 'ignoreVotingExclusions' ? [] : this.state.votingExclusions),
      master: this.self.id,
      current: soft.configuration.current,
      // Members only: a voter that is not (or no longer) a member may be voting-only for all we know.
      canLead: new Set(this.state.nodes.filter((n) => n.roles.masterEligible && !n.roles.votingOnly).map((n) => n.id)),
    });
    return [...wanted].sort();
  }

  private newUuid(): string {
    let text = '';
    for (let i = 0; i < 32; i++) {
      text += uuidAlphabet[this.options.random.nextInt(16)];
      if (i === 7 || i === 11 || i === 15 || i === 19) text += '-';
    }
    return text;
  }

  private send(message: ClusterMessage): void {
    this.outbox.push(message);
  }
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}
