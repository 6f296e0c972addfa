import type { SnapshotDownloadProgress } from '../replication/snapshotFetcher.js';
import type { RestoredFrom } from '../backup/restoredOrigin.js';
import type { ClusterRuntime } from './clusterRuntime.js';

/**
 * What GET /api/v1/cluster/status and `conclave status` show. The master knows every member's progress (from
 * their acknowledgements); another node knows only its own and says so (`authoritative: false`).
 */
export interface NodeStatus {
  readonly id: string;
  readonly name: string;
  readonly transportAddress: string;
  readonly httpAddress: string | null;
  readonly roles: readonly string[];
  /** up: answering the master; down: silent past cluster.nodeFailureTimeoutMs; unknown: not asked on the master. */
  readonly status: 'up' | 'down' | 'unknown';
  readonly role: 'MASTER' | 'REPLICA';
  readonly voter: boolean;
  readonly inSync: boolean;
  readonly appliedIndex: number | null;
  /** Entries the node has not applied yet that the master has committed. */
  readonly lag: number | null;
}

export interface ClusterStatus {
  readonly clusterName: string | null;
  readonly clusterUuid: string | null;
  readonly term: number;
  readonly version: number;
  readonly commitIndex: number;
  readonly master: { readonly id: string; readonly name: string } | null;
  readonly votingConfiguration: readonly string[];
  readonly votingExclusions: readonly string[];
  readonly answeredBy: { readonly id: string; readonly name: string };
  readonly authoritative: boolean;
  readonly nodes: readonly NodeStatus[];
  /**
   * Why the answering node cannot make progress, or null (clusterRuntime.ts, writeProblem): a master whose writes
   * are stalled, a node refusing the master's appends, a committed entry that cannot be applied there.
   */
  readonly writeProblem: { readonly kind: string; readonly index: number | null; readonly forMs: number; readonly detail: string } | null;
  /** The answering node's own snapshots: the one its journal starts after, and a download under way. */
  readonly snapshot: {
    readonly index: number;
    readonly download: (Omit<SnapshotDownloadProgress, 'from'> & { readonly from: string }) | null;
  };
  /** The answering node's data came from a backup (`conclave restore`): which, as what, and how a clone caught up. */
  readonly restoredFrom: RestoredFrom | null;
  /** Schema migrations running or failed (added by the status route: src/http/routes/schemas.ts migrationJson). */
  readonly schemaMigrations?: readonly SchemaMigrationStatus[];
}

/** What the status shows of a schema migration. */
export interface SchemaMigrationStatus {
  readonly type: string;
  readonly state: string;
  readonly toVersion: number;
  readonly nodesDone: number;
  readonly nodesTotal: number;
  readonly nodesPerSecond: number | null;
  readonly secondsLeftEstimate: number | null;
  readonly failure: { readonly path: string; readonly message: string } | null;
}

export function clusterStatus(runtime: ClusterRuntime, restoredFrom: RestoredFrom | null = null): ClusterStatus {
  const { id: selfId, name: selfName } = runtime.self();
  const self = { id: selfId, name: selfName };
  const nodeFailureTicks = runtime.nodeFailureTimeoutTicks;
  const soft = runtime.softState();
  const state = runtime.clusterState();
  const isMaster = soft.role === 'master';
  const followers = runtime.coordinator.core.followerStates();
  const nameOf = (id: string) => state.nodes.find((n) => n.id === id)?.name ?? id;
  const snapshots = runtime.snapshotStatus();
  const problem = runtime.writeProblem();
  const voters = new Set([...soft.configuration.current, ...(soft.configuration.next ?? [])]);
  const nodes: NodeStatus[] = state.nodes.map((node) => {
    const follower = followers.get(node.id);
    const isSelf = node.id === self.id;
    const appliedIndex = isSelf ? runtime.appliedIndex : isMaster ? (follower?.appliedIndex ?? null) : null;
    const status: NodeStatus['status'] = isSelf ? 'up' : !isMaster ? 'unknown' : follower !== undefined && follower.silentTicks < nodeFailureTicks ? 'up' : 'down';
    return {
      id: node.id,
      name: node.name,
      transportAddress: node.address,
      httpAddress: node.httpAddress ?? null,
      roles: [
        ...(node.roles.masterEligible ? ['master-eligible'] : ['replica-only']),
        ...(node.roles.votingOnly ? ['voting-only'] : []),
      ],
      status,
      role: node.id === soft.master ? 'MASTER' : 'REPLICA',
      voter: voters.has(node.id),
      inSync: state.inSync.includes(node.id),
      appliedIndex,
      lag: appliedIndex === null ? null : Math.max(0, soft.commitIndex - appliedIndex),
    };
  });
  return {
    clusterName: state.clusterName,
    clusterUuid: state.clusterUuid,
    term: soft.term,
    version: state.version,
    commitIndex: soft.commitIndex,
    master: soft.master === null ? null : { id: soft.master, name: nameOf(soft.master) },
    votingConfiguration: [...soft.configuration.current].map(nameOf).sort(),
    votingExclusions: state.votingExclusions.map(nameOf),
    answeredBy: self,
    authoritative: isMaster,
    nodes,
    writeProblem: problem === null ? null : { kind: problem.kind, index: problem.index, forMs: Math.round(performance.now() - problem.sinceMs), detail: problem.detail },
    snapshot: { index: snapshots.index, download: snapshots.download === null ? null : { ...snapshots.download, from: nameOf(snapshots.download.from) } },
    restoredFrom,
  };
}
