import type { ClusterMessage } from '../../src/core/clusterMessages.js';
import { applyClusterEntry, emptyClusterState, type ClusterState } from '../../src/core/clusterState.js';
import type { ConfigurationPayload, Entry, Snapshot } from '../../src/core/types.js';
import { hasJointQuorum, type JointConfiguration } from '../../src/core/quorum.js';
import type { SimNode } from './simNode.js';
import type { PersistOutcome } from './simStorage.js';

/**
 * The safety checkers. They run as things happen (persist, apply, send) and after every simulator event, and
 * throw a SimulationViolation at the first broken rule, naming the nodes, indexes and terms involved:
 *
 * - at most one master per term, across all time (from roles and from who sends appends in a term);
 * - the persistence contract: a message goes out only once what it promises is durable (the sender's term, the
 *   vote it grants or asks for, the entries it acknowledges; a master's append may carry entries it is still
 *   syncing), and a master's commit index never passes what a quorum of the voters holds durably;
 * - journal matching, on durable journals: an entry (index, term) is created once, so wherever it appears it
 *   has the same payload and the same predecessor term — which, by induction, makes two journals that share an
 *   (index, term) identical up to it; a full pairwise comparison also runs at the end of each phase;
 * - a committed entry is never lost or changed: the first entry seen committed at an index is kept; every node's
 *   durable journal holds exactly it at every index up to its commit index, no persist overwrites it, and a
 *   node elected master in term T holds every entry known committed in a term before T (leader completeness;
 *   a stale master may legitimately lack entries committed in later terms);
 * - only committed entries are applied, in order, and every replica has the same state at a given applied index;
 * - a voting-only node never accepts a client proposal (it may be master only as a caretaker);
 * - the voting configuration in every journal is well-formed: a joint entry {current: A, next: B} follows the
 *   final configuration A, and only the final configuration B follows it;
 * - every committed configuration change obeys the CrateDB rules against the cluster state it was made in: an
 *   odd number of voters, none excluded, all master-eligible, never fewer than three once there were three,
 *   the master that made it kept unless excluded; only master-eligible nodes ever ask for votes;
 * - every node's cluster state is the one the committed journal gives at its version (replayed here);
 * - snapshots hold committed state: a snapshot's term is the committed entry's, and an installed snapshot's
 *   contents are what every replica had at its index;
 * - read leases (lease.ts): a running node that holds one has applied every write any master acknowledged so far —
 *   checked after every event, so a stale lease is caught whether or not a client's sequential read happens to
 *   reach that node in the window (the workload checks the reads themselves too).
 */
export class SimulationViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulationViolation';
  }
}

interface EntryIdentity {
  readonly payload: string;
  readonly prevTerm: number;
  readonly node: string;
  /** Synced by the node that wrote it first, or written by another: it exists, whatever crashes come. */
  established: boolean;
}

interface CommittedEntry {
  readonly term: number;
  readonly payload: string;
  /**
   * The lowest term at which the commit was seen: at least the term of the master that committed it (followers
   * learn of a commit in that term or later), and usually exactly it, since the master is checked after every event.
   */
  observedTerm: number;
  readonly node: string;
}

/** Terms stay far below this in a run; it packs (index, term) into one number key. */
const termsMax = 1_000_000;

export class InvariantChecker {
  private readonly masterOfTerm = new Map<number, string>();
  private readonly identities = new Map<number, EntryIdentity>();
  /** Per node: the identities it wrote first and has not synced (a crash takes them back: see onUnsyncedLost). */
  private readonly tentativeIdentities = new Map<string, Set<number>>();
  /** committed[i - 1]: the entry first seen committed at index i. */
  private readonly committed: CommittedEntry[] = [];
  /** stateAt[i - 1]: the state machine's contents right after applying index i. */
  private readonly stateAt: string[] = [];
  /** Per node: indexes up to which its journal has been checked against `committed`. */
  private readonly verifiedCommit = new Map<string, number>();
  /** Per master: the term and commit index at which its quorum's durability was last checked. */
  private readonly masterCommitChecked = new Map<string, { readonly term: number; readonly commitIndex: number; readonly configuration: JointConfiguration }>();
  /** Per node: the term in which it was last seen master (to check each election once). */
  private readonly seenMasterIn = new Map<string, number>();
  /** Per node: the indexes of configuration entries in its durable journal, in order. */
  private readonly configurationIndexes = new Map<string, number[]>();
  private readonly payloadText = new WeakMap<Entry, string>();
  /** The cluster state replayed from committed entries, and its rendering at every version. */
  private replayedClusterState: ClusterState = emptyClusterState;
  private readonly clusterStateAtVersion: string[] = [JSON.stringify(emptyClusterState)];
  private readonly checkedClusterStates = new WeakSet<ClusterState>();
  /** The highest index acknowledged to a client so far, by which node and when (for the lease check). */
  private acknowledgedMax = 0;
  private acknowledgedBy = '';
  /** The highest term in which a master was seen (elected, or sending appends). */
  private masterTermMax = 0;
  /** Elections checked, for statistics. */
  elections = 0;
  /** Configuration changes checked against the rules, for statistics. */
  reconfigurations = 0;

  get committedCount(): number {
    return this.committed.length;
  }

  // ---------------------------------------------------------------- hooks

  onBoot(node: SimNode): void {
    // A restarted state machine must hold what every replica held at its applied index.
    const applied = node.storage.stateMachine.appliedIndex;
    if (applied > 0) this.checkState(node, applied);
  }

  onProposalAccepted(node: SimNode, index: number): void {
    // A voting-only node may be a caretaker master (to hand its journal over), never one that takes writes.
    if (!node.canBeMaster) this.fail(`${node.id}, which cannot be master, accepted a client proposal at index ${index}`);
  }

  /**
   * A message leaving `sender` (after its Ready was persisted): what it promises must already be durable — unless the
   * sender has moved to a later term since it made the message. The runtime steps everything that arrived in one
   * turn before it carries out one Ready (as etcd's raft does), so a Ready may carry messages of a term the node has
   * just left: a vote granted in term T, an acknowledgement from T, an append of T. They are stale on arrival and
   * harmless: a node at a later term never votes in T again, and whoever counts acknowledgements of T (its master)
   * holds only while no later term is known.
   */
  onSend(message: ClusterMessage, sender: SimNode): void {
    if (message.type === 'probeRequest' || message.type === 'probeResponse' || message.type === 'joinRequest' || message.type === 'joinResponse') return;
    const durable = sender.storage.hardState;
    const early = (what: string) => this.fail(`${sender.id} sent ${message.type} to ${message.to} in term ${message.term} before ${what} was durable`);
    // What the checks below read is what was written; a message leaves only once what it may vouch for is synced
    // (applies and commit indexes may not be yet: src/node/readyLoop.ts, readyNeedsSync).
    // A master's append may leave while it syncs the entries it carries (appendsMayLeaveEarly): they must be
    // written, and its term durable; what it commits counts only durable copies (checkMasterCommitQuorum).
    const appendWhileSyncing = message.type === 'appendRequest' && sender.storage.vouchedSyncedButEntries;
    // A follower's applied report may leave while it syncs the Ready that applied (CoordinationCore.applied): it
    // must speak of a durable term and acknowledge only entries the last sync made durable.
    const reportWhileSyncing =
      message.type === 'appendResponse' && message.success && message.term === sender.storage.durableTerm && sender.storage.holdsDurablyThrough(message.matchIndex);
    if (!sender.storage.vouchedSynced && !appendWhileSyncing && !reportWhileSyncing) early('everything it vouches for');
    if ((message.type === 'voteRequest' || message.type === 'preVoteRequest') && !sender.config.roles.masterEligible) {
      this.fail(`${sender.id} is not master-eligible but asked for votes in term ${message.term}`);
    }
    // Only a master sends appends and snapshots, so their sender in a term is that term's master.
    if (message.type === 'appendRequest' || message.type === 'snapshotRequest') this.recordMaster(message.term, message.from, `sent ${message.type === 'appendRequest' ? 'an append' : 'a snapshot'} in term ${message.term}`);
    if (message.type !== 'preVoteRequest' && message.type !== 'preVoteResponse') {
      if (durable.term < message.term) early(`its term (durable: ${durable.term})`);
      if (durable.term > message.term) return;
    }
    switch (message.type) {
      case 'snapshotRequest':
        if (!sender.storage.holdsSnapshot(message.snapshot.index)) early(`the snapshot at ${message.snapshot.index}`);
        return;
      case 'appendRequest':
        for (const entry of message.entries) {
          if (sender.storage.entryAt(entry.index)?.term !== entry.term) early(`entry ${entry.index}`);
        }
        return;
      case 'voteRequest':
        if (durable.votedFor !== message.from) early('its vote for itself');
        return;
      case 'voteResponse':
        if (message.granted && durable.votedFor !== message.to) early('the vote it grants');
        return;
      case 'appendResponse':
        if (message.success && sender.storage.lastIndex < message.matchIndex) early(`the entries up to ${message.matchIndex} it acknowledges`);
        return;
      case 'preVoteRequest':
      case 'preVoteResponse':
        return; // a pre-vote promises nothing
    }
  }

  onPersist(node: SimNode, outcome: PersistOutcome): void {
    if (outcome.installed !== null) this.checkSnapshot(node, outcome.installed, true);
    if (outcome.firstIndex === 0) return;
    const storage = node.storage;
    // A committed entry is never overwritten or cut off by a master of its commit term or later: every such
    // master holds it (leader completeness). A stale master of an older term may still overwrite it on a
    // follower that has not reached the newer term — that copy was never counted towards the commit (counting
    // needs the follower to accept an entry of the committing term, after which it refuses the older master),
    // and the newer master repairs it. Raft allows this; the follower never applies the overwritten entry,
    // since its own commit index is below it (the core asserts that it never truncates what it knows committed).
    // The writer's term is not the node's term now: a Ready carries everything stepped since the last one, and a
    // stale master's append followed by the new master's (which moved the node on) is one persist (simulator seed
    // 40073875). It is at least the term of every entry it wrote, and of the snapshot it sent: a master of the
    // commit term or later would have written the committed entry, so a different one of such a term is the loss
    // this looks for. (A master of a later term that wrote only older entries lacked the committed one when it was
    // elected: checkMasterCompleteness fails that run then.)
    let writerTerm = outcome.installed?.term ?? 0;
    for (let index = outcome.firstIndex; index <= storage.lastIndex; index++) writerTerm = Math.max(writerTerm, storage.entryAt(index)!.term);
    outcome.replaced.forEach((old) => {
      const index = old.index;
      const committed = this.committed[index - 1];
      const now = storage.entryAt(index);
      if (committed !== undefined && writerTerm >= committed.observedTerm && this.matches(old, committed) && (now === undefined || !this.matches(now, committed))) {
        this.fail(`committed entry ${index} (term ${committed.term}) lost on ${node.id}: a persist ${now === undefined ? 'cut the journal to ' + storage.lastIndex : `replaced it with an entry of term ${now.term}`}`);
      }
    });
    // Journal matching, on what is now durable.
    for (let index = outcome.firstIndex; index <= storage.lastIndex; index++) {
      const entry = storage.entryAt(index)!;
      const prevTerm = storage.termAt(index - 1)!;
      if (entry.term >= termsMax) this.fail(`term ${entry.term} out of the simulator's range`);
      const key = index * termsMax + entry.term;
      const payload = this.payloadOf(entry);
      const known = this.identities.get(key);
      if (known === undefined) {
        this.identities.set(key, { payload, prevTerm, node: node.id, established: false });
        let tentative = this.tentativeIdentities.get(node.id);
        if (tentative === undefined) this.tentativeIdentities.set(node.id, (tentative = new Set()));
        tentative.add(key);
      } else if (known.payload === payload && known.prevTerm === prevTerm) {
        if (known.node !== node.id) known.established = true;
      } else {
        this.fail(
          `journal matching broken: entry (index ${index}, term ${entry.term}) on ${node.id} is ${payload} after term ${prevTerm}, ` +
            `but on ${known.node} it is ${known.payload} after term ${known.prevTerm}`,
        );
      }
    }
    this.checkConfigurations(node, outcome.firstIndex);
  }

  onSynced(node: SimNode): void {
    const tentative = this.tentativeIdentities.get(node.id);
    if (tentative === undefined) return;
    for (const key of tentative) {
      const identity = this.identities.get(key);
      if (identity !== undefined) identity.established = true;
    }
    tentative.clear();
  }

  /**
   * An entry a node wrote and lost in a crash before syncing it, which no other node ever wrote, never existed: the
   * node, master of the same term again (its vote was lost with it: a single voter re-elects itself), may create
   * another entry at that index and term. Nothing of the lost one left the node (a master's appends leave early only
   * in a term whose vote is durable), so no journal can hold the two.
   */
  onUnsyncedLost(node: SimNode): void {
    const tentative = this.tentativeIdentities.get(node.id);
    if (tentative === undefined) return;
    for (const key of tentative) if (this.identities.get(key)?.established === false) this.identities.delete(key);
    tentative.clear();
  }

  /** The node snapshotted its own applied state: the snapshot must describe committed history. */
  onCompact(node: SimNode, snapshot: Snapshot): void {
    this.checkSnapshot(node, snapshot, false);
    const indexes = this.configurationIndexes.get(node.id);
    if (indexes !== undefined) this.configurationIndexes.set(node.id, indexes.filter((i) => i > snapshot.index));
  }

  onApply(node: SimNode, entry: Entry, commitIndex: number): void {
    if (entry.index > commitIndex) this.fail(`${node.id} applied entry ${entry.index} with its commit index at ${commitIndex}`);
    const durable = node.storage.entryAt(entry.index);
    if (durable === undefined || durable.term !== entry.term || this.payloadOf(durable) !== this.payloadOf(entry)) {
      this.fail(`${node.id} applied entry ${entry.index} (term ${entry.term}) that is not in its durable journal`);
    }
    this.checkCommitted(node, entry.index, entry);
    this.checkState(node, entry.index);
  }

  /** After every simulator event. */
  onAcknowledged(node: SimNode, index: number): void {
    if (index <= this.acknowledgedMax) return;
    this.acknowledgedMax = index;
    this.acknowledgedBy = node.id;
  }

  afterEvent(nodes: readonly SimNode[]): void {
    this.checkNodes(nodes);
    this.checkLeases(nodes);
  }

  /**
   * lease.ts, in two checks on every running node that holds a read lease (a paused node's clock has not caught up
   * yet, and it serves nothing before it has: SimNode.resume): no master of a later term has been elected (points 2
   * and 3: a lease ends before another master exists), and it has applied every acknowledged write (point 4).
   */
  private checkLeases(nodes: readonly SimNode[]): void {
    for (const node of nodes) {
      if (node.status !== 'running') continue;
      const soft = node.core!.softState();
      const applied = node.storage.stateMachine.appliedIndex;
      if (soft.term >= this.masterTermMax && applied >= this.acknowledgedMax) continue;
      if (!node.coordinator!.hasReadLease()) continue;
      if (soft.term < this.masterTermMax) {
        this.fail(
          `${node.id} (${soft.role} in term ${soft.term}) holds a read lease, but ${this.masterOfTerm.get(this.masterTermMax)} was elected master in term ${this.masterTermMax}: ` +
            `a lease must end before another master exists (lease.ts)`,
        );
      }
      if (applied < this.acknowledgedMax) {
        this.fail(
          `${node.id} (${soft.role} in term ${soft.term}) holds a read lease at applied index ${applied}, but ${this.acknowledgedBy} acknowledged ` +
            `the write at index ${this.acknowledgedMax}: a sequential read there would miss it (lease.ts)`,
        );
      }
    }
  }

  /**
   * A master's commit index moved in its term: a quorum of its voting configuration must hold the entry there
   * durably (synced: no crash can take it back). Each follower counted acknowledged it after its sync; the master
   * counts itself only once its own sync returned (CoordinationCore.ownMatchIndex) — a master that counted entries
   * it was still syncing (mutation countOwnUnpersistedEntries) fails here when a follower answers first. The commit
   * index a new master starts from was checked when it moved.
   */
  private checkMasterCommitQuorum(master: SimNode, nodes: readonly SimNode[]): void {
    const core = master.core!;
    const { term, commitIndex } = core.softState();
    const checked = this.masterCommitChecked.get(master.id);
    const configuration = core.votingConfiguration();
    this.masterCommitChecked.set(master.id, { term, commitIndex, configuration });
    if (checked === undefined || checked.term !== term || commitIndex <= checked.commitIndex) return;
    if (core.entryAt(commitIndex)?.term !== term) return;
    const holders = new Set(nodes.filter((n) => n.storage.holdsDurably(commitIndex, term)).map((n) => n.id));
    // The commit was counted in the configuration in force before the event, or one the event moved to first (a
    // commit that completes a change appends the next configuration entry at once, which is in force from then).
    if (!hasJointQuorum(checked.configuration, holders) && !hasJointQuorum(configuration, holders)) {
      this.fail(
        `${master.id} (master in term ${term}) committed index ${commitIndex}, which only ${[...holders].sort().join(', ') || 'no node'} hold durably: ` +
          `not a quorum of ${describeConfiguration(checked.configuration)}`,
      );
    }
  }

  private checkNodes(nodes: readonly SimNode[]): void {
    for (const node of nodes) {
      const core = node.core;
      if (core === null) continue;

      const soft = core.softState();
      if (soft.commitIndex > soft.lastIndex) this.fail(`${node.id} has commit index ${soft.commitIndex} beyond its journal (${soft.lastIndex})`);
      if (soft.role === 'master') this.checkMasterCommitQuorum(node, nodes);
      // Between the messages a node steps and the Ready that stores what they brought (the runtime steps everything
      // that arrived in one turn, then carries out one Ready), its commit index may run ahead of its disk; what it
      // stores with a commit index is what must hold.
      const durableCommit = node.storage.hardState.commitIndex;
      if (durableCommit > node.storage.lastIndex) {
        this.fail(`${node.id} stored commit index ${durableCommit} beyond its durable journal (${node.storage.lastIndex})`);
      }
      const verified = this.verifiedCommit.get(node.id) ?? 0;
      if (durableCommit > verified) {
        // Below its snapshot a node has no entries to show: the snapshot check covered them.
        for (let index = Math.max(verified, node.storage.snapshotIndex) + 1; index <= durableCommit; index++) {
          this.checkCommitted(node, index, node.storage.entryAt(index)!, soft.term);
        }
        this.verifiedCommit.set(node.id, durableCommit);
      }
      const clusterState = node.coordinator!.clusterState();
      if (!this.checkedClusterStates.has(clusterState)) {
        this.checkedClusterStates.add(clusterState);
        const expected = this.clusterStateAtVersion[clusterState.version];
        if (expected === undefined) this.fail(`${node.id} has cluster state version ${clusterState.version}, which no committed entry produced`);
        else if (expected !== JSON.stringify(clusterState)) {
          this.fail(`${node.id}'s cluster state at version ${clusterState.version} differs from the committed journal's: ${JSON.stringify(clusterState)} vs ${expected}`);
        }
      }
      if (soft.role === 'master') {
        this.recordMaster(soft.term, node.id, `is master in term ${soft.term}`);
        if (this.seenMasterIn.get(node.id) !== soft.term) {
          this.seenMasterIn.set(node.id, soft.term);
          this.checkMasterCompleteness(node, soft.term);
        }
      }
    }
  }

  /** A full pairwise comparison of durable journals (end of each phase): shared (index, term) ⇒ same prefix. */
  checkJournalsPairwise(nodes: readonly SimNode[]): void {
    for (let a = 0; a < nodes.length; a++) {
      for (let b = a + 1; b < nodes.length; b++) {
        const sa = nodes[a]!.storage;
        const sb = nodes[b]!.storage;
        const low = Math.max(sa.snapshotIndex, sb.snapshotIndex);
        let shared = Math.min(sa.lastIndex, sb.lastIndex);
        while (shared > low && sa.termAt(shared) !== sb.termAt(shared)) shared--;
        for (let i = low + 1; i <= shared; i++) {
          const ea = sa.entryAt(i)!;
          const eb = sb.entryAt(i)!;
          if (ea.term !== eb.term || this.payloadOf(ea) !== this.payloadOf(eb)) {
            this.fail(
              `journals of ${nodes[a]!.id} and ${nodes[b]!.id} share entry (index ${shared}, term ${sa.termAt(shared)}) ` +
                `but differ at index ${i} (terms ${ea.term} and ${eb.term})`,
            );
          }
        }
      }
    }
  }

  // ---------------------------------------------------------------- rules

  private recordMaster(term: number, id: string, how: string): void {
    const known = this.masterOfTerm.get(term);
    if (known === undefined) this.masterOfTerm.set(term, id);
    else if (known !== id) this.fail(`two masters in term ${term}: ${known} and ${id} (${id} ${how})`);
    this.masterTermMax = Math.max(this.masterTermMax, term);
  }

  /**
   * Cluster-exclusive jobs: a job's committed steps go 1, 2, 3… — never one twice, never one skipped, never out of
   * order — and each is the claim holder's of the time (the progress a job commits names its step: faults.ts jobStep).
   */
  private checkJobs(before: ClusterState['jobs'], after: ClusterState['jobs'], index: number): void {
    for (const [name, job] of Object.entries(after)) {
      const previous = before[name];
      if (previous === job) continue;
      if (job.version < (previous?.version ?? 0)) this.fail(`job ${name} went back from version ${previous?.version} to ${job.version} at index ${index}`);
      if (job.version === (previous?.version ?? 0)) continue;
      const step = (job.progress as { step?: number } | null)?.step;
      if (job.version !== (previous?.version ?? 0) + 1 || step !== job.version) {
        this.fail(`job ${name} committed step ${String(step)} as version ${job.version} after version ${previous?.version ?? 0} at index ${index}`);
      }
      if (previous?.claim == null || previous.claim.owner !== job.claim?.owner || previous.claim.term !== job.claim.term) {
        this.fail(`job ${name} committed progress at index ${index} without the claim of its proposer`);
      }
    }
  }

  private checkCommitted(node: SimNode, index: number, entry: Entry, observedTerm?: number): void {
    const known = this.committed[index - 1];
    if (known === undefined) {
      if (index !== this.committed.length + 1) this.fail(`internal: committed index ${index} seen before ${this.committed.length + 1}`);
      this.committed.push({
        term: entry.term,
        payload: this.payloadOf(entry),
        observedTerm: observedTerm ?? node.core?.softState().term ?? entry.term,
        node: node.id,
      });
      if (entry.payload.kind === 'configuration' || entry.payload.kind === 'cluster') {
        if (entry.payload.kind === 'configuration' && entry.payload.next !== undefined) this.checkVotingRules(entry, entry.payload);
        const jobsBefore = this.replayedClusterState.jobs;
        this.replayedClusterState = applyClusterEntry(this.replayedClusterState, entry);
        this.checkJobs(jobsBefore, this.replayedClusterState.jobs, index);
        this.clusterStateAtVersion[this.replayedClusterState.version] = JSON.stringify(this.replayedClusterState);
      }
    } else if (!this.matches(entry, known)) {
      this.fail(
        `committed entry ${index} changed: ${known.node} committed term ${known.term} ${known.payload}, ` +
          `but ${node.id} has term ${entry.term} ${this.payloadOf(entry)} there within its commit index`,
      );
    } else {
      known.observedTerm = Math.min(known.observedTerm, observedTerm ?? node.core?.softState().term ?? entry.term);
    }
  }

  /** Leader completeness: a master of term T holds every entry known committed in a term before T. */
  private checkMasterCompleteness(node: SimNode, term: number): void {
    this.elections++;
    let mustHold = 0;
    this.committed.forEach((c, i) => {
      if (c.observedTerm < term) mustHold = i + 1;
    });
    const snapshotIndex = node.storage.snapshotIndex;
    if (snapshotIndex > 0 && snapshotIndex <= this.committed.length && this.committed[snapshotIndex - 1]!.term !== node.storage.termAt(snapshotIndex)) {
      this.fail(`${node.id} became master in term ${term} on a snapshot at ${snapshotIndex} whose term is not the committed entry's`);
    }
    for (let index = snapshotIndex + 1; index <= mustHold; index++) {
      const entry = node.storage.entryAt(index);
      const committed = this.committed[index - 1]!;
      if (entry === undefined || !this.matches(entry, committed)) {
        this.fail(
          `${node.id} became master in term ${term} without committed entry ${index} (term ${committed.term}, committed on ${committed.node}): ` +
            (entry === undefined ? `its journal ends at ${node.storage.lastIndex}` : `it holds an entry of term ${entry.term} there`),
        );
      }
    }
  }

  private checkState(node: SimNode, index: number): void {
    const hash = node.storage.stateMachine.hash();
    const known = this.stateAt[index - 1];
    if (known === undefined) {
      // Applied indexes are reached in order on every node, so the first node to reach index i fills slot i.
      this.stateAt[index - 1] = hash;
    } else if (known !== hash) {
      this.fail(`state machines differ at applied index ${index}: ${node.id} has [${hash}], another replica had [${known}]`);
    }
  }

  private checkConfigurations(node: SimNode, firstIndex: number): void {
    const storage = node.storage;
    let indexes = this.configurationIndexes.get(node.id);
    if (indexes === undefined) this.configurationIndexes.set(node.id, (indexes = []));
    while (indexes.length > 0 && indexes[indexes.length - 1]! >= firstIndex) indexes.pop();
    // An installed snapshot replaced the journal below it: its configuration stands for those entries.
    while (indexes.length > 0 && indexes[0]! <= storage.snapshotIndex) indexes.shift();
    for (let index = firstIndex; index <= storage.lastIndex; index++) {
      const payload = storage.entryAt(index)!.payload;
      if (payload.kind !== 'configuration') continue;
      const previousIndex = indexes[indexes.length - 1];
      const previous =
        previousIndex !== undefined
          ? (storage.entryAt(previousIndex)!.payload as ConfigurationPayload)
          : storage.snapshot !== null
            ? storage.snapshot.configuration
            : undefined;
      const problem = configurationStepProblem(previous, payload, index);
      if (problem !== null) this.fail(`voting configuration in ${node.id}'s journal is malformed at ${index}: ${problem}`);
      indexes.push(index);
    }
  }

  /**
   * A committed joint entry {current: A, next: B} is a change the master made by the rules: check B against the
   * cluster state the journal had just before it (the master proposes only once its previous change is applied,
   * so that is the state it decided on).
   */
  private checkVotingRules(entry: Entry, payload: ConfigurationPayload): void {
    this.reconfigurations++;
    const state = this.replayedClusterState;
    const next = payload.next!;
    const excluded = new Set(state.votingExclusions);
    const eligibleMembers = new Set(state.nodes.filter((n) => n.roles.masterEligible).map((n) => n.id));
    const master = this.masterOfTerm.get(entry.term);
    const where = `configuration change at ${entry.index} (term ${entry.term}) [${payload.current.join(',')}] → [${next.join(',')}]`;
    if (next.length % 2 === 0) this.fail(`${where}: an even number of voters`);
    const excludedVoters = next.filter((id) => excluded.has(id));
    if (excludedVoters.length > 0) this.fail(`${where}: keeps excluded ${excludedVoters.join(',')}`);
    const ineligible = next.filter((id) => !eligibleMembers.has(id) && !payload.current.includes(id));
    if (ineligible.length > 0) this.fail(`${where}: ${ineligible.join(',')} not master-eligible members`);
    if (payload.current.filter((id) => !excluded.has(id)).length >= 3 && next.length < 3) this.fail(`${where}: shrinks below three`);
    if (master !== undefined && !excluded.has(master) && !next.includes(master)) this.fail(`${where}: drops its master ${master}`);
  }

  /** A snapshot (taken or installed) holds the committed entry's term at its index and the state every replica had. */
  private checkSnapshot(node: SimNode, snapshot: Snapshot, installed: boolean): void {
    const committed = this.committed[snapshot.index - 1];
    const how = installed ? 'installed' : 'took';
    if (committed === undefined) this.fail(`${node.id} ${how} a snapshot at ${snapshot.index}, beyond anything known committed (${this.committed.length})`);
    else if (committed.term !== snapshot.term) this.fail(`${node.id} ${how} a snapshot at ${snapshot.index} of term ${snapshot.term}, but the committed entry there is of term ${committed.term}`);
    if (installed) this.checkState(node, snapshot.index);
  }

  private matches(entry: Entry, committed: CommittedEntry): boolean {
    return entry.term === committed.term && this.payloadOf(entry) === committed.payload;
  }

  private payloadOf(entry: Entry): string {
    let text = this.payloadText.get(entry);
    if (text === undefined) {
      text = JSON.stringify(entry.payload);
      this.payloadText.set(entry, text);
    }
    return text;
  }

  private fail(message: string): never {
    throw new SimulationViolation(message);
  }
}

const render = (ids: readonly string[]) => `[${ids.join(',')}]`;
const sameMembers = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((id) => b.includes(id));

/** Null when `next` may follow `previous` in a journal; otherwise why not. */
export function configurationStepProblem(previous: ConfigurationPayload | undefined, next: ConfigurationPayload, index: number): string | null {
  if (new Set(next.current).size !== next.current.length || (next.next !== undefined && new Set(next.next).size !== next.next.length)) {
    return 'a configuration lists a node twice';
  }
  if (next.current.length === 0 || (next.next !== undefined && next.next.length === 0)) return 'an empty configuration';
  if (previous === undefined) {
    if (next.next !== undefined) return `the first configuration is joint ${render(next.current)} → ${render(next.next)}`;
    if (index !== 1) return `the first configuration is at index ${index}, not 1 (bootstrap)`;
    return null;
  }
  if (previous.next === undefined) {
    if (next.next === undefined) return `final ${render(next.current)} follows final ${render(previous.current)} without a joint phase`;
    if (!sameMembers(next.current, previous.current)) {
      return `joint ${render(next.current)} → ${render(next.next)} does not start from the configuration in force ${render(previous.current)}`;
    }
    return null;
  }
  if (next.next !== undefined) return `joint ${render(next.current)} → ${render(next.next)} follows another joint entry`;
  if (!sameMembers(next.current, previous.next)) {
    return `final ${render(next.current)} does not finish joint ${render(previous.current)} → ${render(previous.next)}`;
  }
  return null;
}

function describeConfiguration(configuration: JointConfiguration): string {
  const current = [...configuration.current].sort().join(', ');
  return configuration.next === undefined ? `{${current}}` : `{${current}} and {${[...configuration.next].sort().join(', ')}}`;
}
