import { invariant } from '../errors/catalogue.js';
import { applyJobChange, type JobChange, type Jobs } from './clusterJobs.js';
import { applyWebhookChange, type WebhookChange, type Webhooks } from './clusterWebhooks.js';
import type { ConfigurationPayload, Entry } from './types.js';

/**
 * The cluster state: what the cluster knows about itself, applied from committed journal entries and so
 * identical on every node at a given applied index. Only the master changes it, by proposing `ClusterChange`s;
 * its version counts the cluster-state entries (changes and voting configurations) applied so far.
 *
 * Values are plain, sorted and frozen-by-convention, so that two nodes' states compare equal as JSON.
 */
export interface NodeRoles {
  /** May vote in elections and be counted in the voting configuration. */
  readonly masterEligible: boolean;
  /** Votes but is never elected master (a tie-breaker); only meaningful when masterEligible. */
  readonly votingOnly: boolean;
}

export interface NodeDescriptor {
  /** Unique and permanent: generated once per data directory. */
  readonly id: string;
  /** Human-chosen, unique in the cluster. */
  readonly name: string;
  /** Where peers reach it (host:port of the cluster transport). */
  readonly address: string;
  /** Where clients reach its HTTP API (host:port), for redirects and status. */
  readonly httpAddress?: string;
  /**
   * Where other nodes send node-to-node HTTP (forwarded requests, blobs, snapshots): the internal listener, run when
   * the transport or the API uses TLS (HTTPS with the cluster's CA when the transport does). Absent: the HTTP API.
   */
  readonly internalHttpAddress?: string;
  readonly roles: NodeRoles;
  /** The software version, `major.minor.patch`. */
  readonly version: string;
}

export interface ClusterState {
  readonly version: number;
  readonly clusterName: string | null;
  readonly clusterUuid: string | null;
  /** Members, by id order. */
  readonly nodes: readonly NodeDescriptor[];
  /** The latest committed voting configuration. */
  readonly votingConfiguration: { readonly current: readonly string[]; readonly next?: readonly string[] };
  /** Node ids the voting configuration must leave out (for maintenance), sorted. */
  readonly votingExclusions: readonly string[];
  /** Dynamic settings, by name (sorted when rendered). */
  readonly settings: Readonly<Record<string, string | number | boolean>>;
  /** Members that hold every committed entry the master has acknowledged to clients (see issue 5), sorted. */
  readonly inSync: readonly string[];
  /**
   * Cluster-exclusive jobs by name (clusterJobs.ts): claim, committed progress, version. Snapshots and journals of
   * releases before jobs existed have none (restoredClusterState fills it in).
   */
  readonly jobs: Jobs;
  /** Registered webhooks by id (clusterWebhooks.ts); states of releases before webhooks have none. */
  readonly webhooks: Webhooks;
}

export type ClusterChange =
  /** The first master names the cluster: committed once in a cluster's life. */
  | { readonly type: 'formed'; readonly clusterName: string; readonly clusterUuid: string; readonly master: NodeDescriptor }
  /**
   * `conclave node unsafe-bootstrap`: the quorum is lost for good and an operator makes this node a cluster of one
   * under a new UUID (so that members of the old cluster, whose journals may hold what this one lacks, are refused
   * until detached). Written by the tool, never proposed by a master.
   */
  | { readonly type: 'reformed'; readonly clusterUuid: string; readonly master: string }
  /** A validated joiner becomes a member (or a member's descriptor is updated after a restart). */
  | { readonly type: 'nodeJoined'; readonly node: NodeDescriptor }
  /** A member leaves for good (asked to, or removed by an operator); it must join again to come back. */
  | { readonly type: 'nodeLeft'; readonly id: string }
  | { readonly type: 'votingExclusionsAdded'; readonly ids: readonly string[] }
  | { readonly type: 'votingExclusionsCleared' }
  /** Sets settings; a null value removes one. */
  | { readonly type: 'settingsUpdated'; readonly settings: Readonly<Record<string, string | number | boolean | null>> }
  | { readonly type: 'inSyncChanged'; readonly added: readonly string[]; readonly removed: readonly string[] }
  /** Claims, progress, releases and removals of cluster-exclusive jobs (clusterJobs.ts). */
  | JobChange
  /** Registrations, delivered marks, breakage and removals of webhooks (clusterWebhooks.ts). */
  | WebhookChange;

export const emptyClusterState: ClusterState = {
  version: 0,
  clusterName: null,
  clusterUuid: null,
  nodes: [],
  votingConfiguration: { current: [] },
  votingExclusions: [],
  settings: {},
  inSync: [],
  jobs: {},
  webhooks: {},
};

/**
 * A cluster state read back from JSON (a snapshot, a backup's manifest), made whole: states written before a field
 * existed lack it, and its absence means the field's empty value.
 */
export function restoredClusterState(state: ClusterState): ClusterState {
  const partial = state as Partial<ClusterState> & Omit<ClusterState, 'jobs' | 'webhooks'>;
  if (partial.jobs !== undefined && partial.webhooks !== undefined) return state;
  // In the fields' order, whichever were missing: states compare equal as JSON.
  const { jobs, webhooks, ...rest } = partial;
  return { ...rest, jobs: jobs ?? {}, webhooks: webhooks ?? {} };
}

/** Most voting exclusions at once (Elasticsearch allows 10 by default: excluding more is a mistake). */
export const votingExclusionsMax = 10;

const sorted = (ids: Iterable<string>) => [...new Set(ids)].sort();

/** The cluster state after applying one committed entry; entries of other kinds leave it as it is. */
export function applyClusterEntry(state: ClusterState, entry: Entry): ClusterState {
  const payload = entry.payload;
  if (payload.kind === 'configuration') return { ...state, version: state.version + 1, votingConfiguration: configurationOf(payload) };
  if (payload.kind !== 'cluster') return state;
  return { ...applyClusterChange(state, payload.change as ClusterChange), version: state.version + 1 };
}

function configurationOf(payload: ConfigurationPayload): ClusterState['votingConfiguration'] {
  return payload.next === undefined ? { current: [...payload.current] } : { current: [...payload.current], next: [...payload.next] };
}

/**
 * Deterministic and total: a change that no longer makes sense when it commits (a join of a name taken in the
 * meantime, a leave of a node already gone) changes nothing, so every replica reaches the same state.
 */
export function applyClusterChange(state: ClusterState, change: ClusterChange): ClusterState {
  switch (change.type) {
    case 'formed':
      if (state.clusterUuid !== null) return state;
      return { ...state, clusterName: change.clusterName, clusterUuid: change.clusterUuid, nodes: withNode(state.nodes, change.master) };
    case 'reformed':
      return {
        ...state,
        clusterUuid: change.clusterUuid,
        nodes: state.nodes.filter((n) => n.id === change.master),
        inSync: [change.master],
        votingExclusions: [],
      };
    case 'nodeJoined':
      if (state.nodes.some((n) => n.name === change.node.name && n.id !== change.node.id)) return state;
      return { ...state, nodes: withNode(state.nodes, change.node) };
    case 'nodeLeft':
      return { ...state, nodes: state.nodes.filter((n) => n.id !== change.id), inSync: state.inSync.filter((id) => id !== change.id) };
    case 'votingExclusionsAdded': {
      const exclusions = sorted([...state.votingExclusions, ...change.ids]);
      return exclusions.length > votingExclusionsMax ? state : { ...state, votingExclusions: exclusions };
    }
    case 'votingExclusionsCleared':
      return { ...state, votingExclusions: [] };
    case 'settingsUpdated': {
      const settings: Record<string, string | number | boolean> = { ...state.settings };
      for (const [name, value] of Object.entries(change.settings)) {
        if (value === null) delete settings[name];
        else settings[name] = value;
      }
      return { ...state, settings };
    }
    case 'inSyncChanged': {
      const members = new Set(state.nodes.map((n) => n.id));
      const removed = new Set(change.removed);
      return { ...state, inSync: sorted([...state.inSync.filter((id) => !removed.has(id)), ...change.added.filter((id) => members.has(id))]) };
    }
    case 'jobClaimed':
    case 'jobProgress':
    case 'jobReleased':
    case 'jobRemoved': {
      const jobs = applyJobChange(state.jobs, change);
      return jobs === state.jobs ? state : { ...state, jobs };
    }
    case 'webhookRegistered':
    case 'webhookRemoved':
    case 'webhookMarks':
    case 'webhookBroken': {
      const webhooks = applyWebhookChange(state.webhooks, change);
      return webhooks === state.webhooks ? state : { ...state, webhooks };
    }
  }
}

function withNode(nodes: readonly NodeDescriptor[], node: NodeDescriptor): NodeDescriptor[] {
  invariant(node.id.length > 0, 'a node descriptor without an id');
  return [...nodes.filter((n) => n.id !== node.id), node].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export function memberIds(state: ClusterState): string[] {
  return state.nodes.map((n) => n.id);
}

export function isMember(state: ClusterState, id: string): boolean {
  return state.nodes.some((n) => n.id === id);
}

/** Parses `major.minor.patch`; null when malformed. */
export function parseVersion(version: string): readonly [number, number, number] | null {
  const match = /^(\d{1,6})\.(\d{1,6})\.(\d{1,6})$/.exec(version);
  return match === null ? null : [Number(match[1]), Number(match[2]), Number(match[3])];
}

function compareVersions(a: readonly [number, number, number], b: readonly [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/**
 * Whether every member runs `version` or newer: a master proposes an entry that an older release cannot apply
 * (a new command type) only then, or that member would stop at it. A member whose version does not parse counts
 * as older.
 */
export function everyMemberAtLeast(state: ClusterState, version: string): boolean {
  const wanted = parseVersion(version);
  if (wanted === null) return false;
  return state.nodes.every((n) => {
    const v = parseVersion(n.version);
    return v !== null && compareVersions(v, wanted) >= 0;
  });
}

export type JoinRefusal = 'clusterNameMismatch' | 'clusterUuidMismatch' | 'nameInUse' | 'incompatibleVersion';

export interface JoinValidationInput {
  readonly state: ClusterState;
  readonly joiner: NodeDescriptor;
  readonly joinerClusterName: string;
  /** The cluster the joiner belonged to before, if any: a node never moves between clusters. */
  readonly joinerClusterUuid: string | null;
}

/**
 * Whether the master may let `joiner` in. A node of another cluster (by name or UUID) is refused; so is a
 * second node with a member's name; so is a version of another major, or one older than the oldest member
 * (during a rolling upgrade the cluster only moves forward: an older node could not read what newer ones wrote).
 */
export function validateJoin(input: JoinValidationInput): JoinRefusal | null {
  const { state, joiner } = input;
  if (input.joinerClusterName !== state.clusterName) return 'clusterNameMismatch';
  if (input.joinerClusterUuid !== null && input.joinerClusterUuid !== state.clusterUuid) return 'clusterUuidMismatch';
  if (state.nodes.some((n) => n.name === joiner.name && n.id !== joiner.id)) return 'nameInUse';
  const version = parseVersion(joiner.version);
  if (version === null) return 'incompatibleVersion';
  for (const member of state.nodes) {
    if (member.id === joiner.id) continue;
    const memberVersion = parseVersion(member.version);
    if (memberVersion === null) continue;
    if (memberVersion[0] !== version[0]) return 'incompatibleVersion';
  }
  const oldest = state.nodes
    .filter((n) => n.id !== joiner.id)
    .map((n) => parseVersion(n.version))
    .filter((v): v is readonly [number, number, number] => v !== null)
    .sort(compareVersions)[0];
  if (oldest !== undefined && compareVersions(version, oldest) < 0) return 'incompatibleVersion';
  return null;
}
