import type { NodeDescriptor } from './clusterState.js';
import type { VotingConfiguration } from './quorum.js';

/**
 * The vocabulary of the coordination core: entries, messages, and the Ready record that tells the runtime what to
 * persist, send and apply. Terms and indexes are plain numbers (safe integers: 2^53 terms is enough forever).
 */

/** A change of the voting configuration. `next` present: the joint phase; absent: the change is complete. */
export interface ConfigurationPayload {
  readonly kind: 'configuration';
  readonly current: readonly string[];
  readonly next?: readonly string[];
}

/** An opaque command for the state machine above the core (content, cluster-state changes). */
export interface CommandPayload {
  readonly kind: 'command';
  readonly data: unknown;
}

/** A change of the cluster state (membership, exclusions, settings, in-sync set); see clusterState.ts. */
export interface ClusterPayload {
  readonly kind: 'cluster';
  readonly change: unknown;
}

/** Appended by every new master: committing it commits everything before it (Raft §5.4.2). */
export interface NoopPayload {
  readonly kind: 'noop';
}

export type EntryPayload = ConfigurationPayload | CommandPayload | ClusterPayload | NoopPayload;

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly payload: EntryPayload;
}

/**
 * A state-machine snapshot that replaces the journal up to `index`. The core keeps the metadata; `data` is opaque
 * to it (the runtime's handle on the snapshot: the cluster state and the content, or a reference to a file).
 */
export interface Snapshot {
  readonly index: number;
  readonly term: number;
  /** The voting configuration in force at `index` (the latest configuration entry at or before it). */
  readonly configuration: ConfigurationPayload;
  readonly data: unknown;
}

/** What must survive a crash, besides the journal. */
export interface HardState {
  readonly term: number;
  /** Whom this node voted for in `term`, if anyone. */
  readonly votedFor: string | null;
  /** Known committed index. Persisting it is an optimisation (it can always be re-learned), never a requirement. */
  readonly commitIndex: number;
}

interface MessageBase {
  readonly from: string;
  readonly to: string;
  readonly term: number;
}

/** Asks whether a peer would vote for the sender in `term` (= sender's term + 1), without changing any term. */
export interface PreVoteRequest extends MessageBase {
  readonly type: 'preVoteRequest';
  readonly lastIndex: number;
  readonly lastTerm: number;
}

export interface PreVoteResponse extends MessageBase {
  readonly type: 'preVoteResponse';
  readonly granted: boolean;
}

export interface VoteRequest extends MessageBase {
  readonly type: 'voteRequest';
  readonly lastIndex: number;
  readonly lastTerm: number;
}

export interface VoteResponse extends MessageBase {
  readonly type: 'voteResponse';
  readonly granted: boolean;
}

export interface AppendRequest extends MessageBase {
  readonly type: 'appendRequest';
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly Entry[];
  readonly commitIndex: number;
  /** Numbers the master's appends in its term, strictly increasing: a read index waits for acks of a later one. */
  readonly seq: number;
  /** The master's tick when it sent this: the start of the master lease an acknowledgement confirms. */
  readonly sentTick: number;
  /** A read lease for the follower, anchored at one of its own ticks (see lease.ts). */
  readonly lease?: ReadLeaseGrant;
}

/** The follower may serve sequential reads until its own tick `anchorTick + ticks` (while its term stays the same). */
export interface ReadLeaseGrant {
  /** The follower's clock epoch echoed: a grant anchored on an earlier incarnation's clock is ignored. */
  readonly epoch: number;
  /** A tick of the follower's clock: when it received the append whose acknowledgement this grant answers. */
  readonly anchorTick: number;
  readonly ticks: number;
}

export interface AppendResponse extends MessageBase {
  readonly type: 'appendResponse';
  readonly success: boolean;
  /** On success: the index up to which the follower's journal matches the master's. */
  readonly matchIndex: number;
  /**
   * On failure: the highest index at which the follower's journal may still match the master's (its last index,
   * or one below the rejected prevIndex when the entry there conflicts), so the master skips back in one step.
   */
  readonly lastIndex: number;
  /** How far the follower's state machine has applied: the master waits on it before the next cluster-state change. */
  readonly appliedIndex: number;
  /** The `seq` and `sentTick` of the latest append the follower received from this master (0 if none). */
  readonly echoSeq: number;
  readonly echoSentTick: number;
  /** The follower's own tick when that append arrived: the anchor of the lease the master may grant back. */
  readonly recvTick: number;
  /** Names this incarnation of the follower's clock (ticks restart from 0 when a node restarts). */
  readonly epoch: number;
}

/** A node asks the master to confirm, with a quorum round, an index that a linearizable read must wait for. */
export interface ReadIndexRequest extends MessageBase {
  readonly type: 'readIndexRequest';
  readonly id: string;
}

/** The confirmed read index, or null when the master could not confirm one (it stepped down, or is overloaded). */
export interface ReadIndexResponse extends MessageBase {
  readonly type: 'readIndexResponse';
  readonly id: string;
  readonly index: number | null;
}

/** Sent instead of entries the master has compacted away: the follower replaces its journal up to the snapshot. */
export interface SnapshotRequest extends MessageBase {
  readonly type: 'snapshotRequest';
  readonly snapshot: Snapshot;
  /**
   * The sender as it describes itself now, set by the cluster coordinator (the core knows no addresses). The
   * follower downloads the file from the addresses it names: the cluster state inside the snapshot names those the
   * sender had when the snapshot was taken, wrong once a node has moved (restored elsewhere from a copy of its data).
   */
  readonly sender?: NodeDescriptor;
}

export type Message =
  | PreVoteRequest
  | PreVoteResponse
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | SnapshotRequest
  | ReadIndexRequest
  | ReadIndexResponse;

/** The outcome of a readIndex() call: the index to wait for before reading, or null when none could be confirmed. */
export interface ReadState {
  readonly id: string;
  readonly index: number | null;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'master';

/**
 * What the runtime must do after a step, in this order:
 *
 * 1. `snapshot` (when present) is installed: the state machine is replaced by it, its applied index becomes
 *    `snapshot.index`, and the whole journal is dropped (entries after the snapshot that the core keeps come
 *    again in `entries`, so the disk never has to guess which of its entries still agree). Then
 *    `hardState` (when present) and `entries` (when non-empty) are made durable: first truncate the journal from
 *    `entries[0].index` (a conflicting suffix is replaced), then append. All must be fsynced before step 2 —
 *    a vote or an acknowledgement sent before its state is durable can elect two masters or lose a commit.
 * 2. `messages` are sent (in any order; the network may reorder them anyway).
 * 3. `committed` entries are applied to the state machine, in index order. They are always already durable.
 * 4. `readStates` answer earlier readIndex() calls: a linearizable read with that id may be served once the state
 *    machine has applied its index (null: refused, try again or elsewhere). They need nothing persisted.
 * 5. `advance()` is called so the core stops reporting these.
 */
export interface Ready {
  readonly snapshot?: Snapshot;
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly committed: readonly Entry[];
  readonly readStates: readonly ReadState[];
}

/** What a node currently believes; for status and for the simulator's checks. Never persisted. */
export interface SoftState {
  readonly role: Role;
  readonly master: string | null;
  readonly term: number;
  readonly commitIndex: number;
  readonly lastIndex: number;
  readonly configuration: { readonly current: VotingConfiguration; readonly next?: VotingConfiguration };
}

/** A deterministic random source; the simulator seeds it, the runtime may seed it from anything. */
export interface Random {
  /** An integer in [0, bound). */
  nextInt(bound: number): number;
}
