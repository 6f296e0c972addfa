import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import { ClusterCoordinator } from '../core/clusterCoordinator.js';
import type { ClusterChange, ClusterState } from '../core/clusterState.js';
import type { HardState } from '../core/types.js';
import { ConclaveError } from '../errors/catalogue.js';
import { getMeta, openDatabase, setMeta, type Db } from '../storage/database.js';
import { JournalStore } from '../storage/journal.js';
import { clearSearchIndex } from '../storage/searchIndex.js';
import { stateMachineMetaKeys, stateMachineTables } from '../storage/snapshotFile.js';

/**
 * Recovery of a stopped node, for when the cluster cannot help itself (`conclave node …`). Both lose data; the
 * CLI shows what the node holds, warns, and asks before anything is written. The database's exclusive lock
 * guarantees the node is not running.
 */
export interface NodeOnDisk {
  readonly nodeId: string;
  readonly term: number;
  readonly lastIndex: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly clusterState: ClusterState;
}

function readNode(db: Db): NodeOnDisk {
  const nodeId = getMeta<string>(db, 'node_id');
  if (nodeId === undefined) throw new ConclaveError('INVALID_REQUEST', 'This data directory has never started a node: there is nothing to recover.');
  const journal = new JournalStore(db);
  const appliedIndex = getMeta<number>(db, 'applied_index') ?? 0;
  const restored = journal.restoredState(appliedIndex);
  // The cluster state is rebuilt the way the node itself does at start: a coordinator restored from disk.
  const coordinator = new ClusterCoordinator(
    {
      self: { id: nodeId, name: nodeId, address: '-', roles: { masterEligible: true, votingOnly: false }, version: '0.0.0' },
      clusterName: '-',
      bootstrap: { kind: 'none' },
      core: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 2, appendEntriesMax: 1, inflightAppendsMax: 1, uncommittedEntriesMax: 1, clockDriftPercent: 5, readIndexPendingMax: 1 },
      probeIntervalTicks: 1,
      discoveryInfoTicksMax: 1,
      discoveredPeersMax: 1,
      joinRetryTicks: 1,
      nodeFailureTimeoutTicks: 10,
      inSyncTimeoutTicks: 10,
      publishTimeoutTicks: 1,
      pendingChangesMax: 1,
      random: { nextInt: () => 0 },
    },
    restored,
  );
  return {
    nodeId,
    term: restored.hardState.term,
    lastIndex: journal.lastIndex(),
    commitIndex: restored.hardState.commitIndex,
    appliedIndex,
    clusterState: coordinator.clusterState(),
  };
}

/** What the node holds, for the warning the CLI prints before asking. */
export function inspectNode(dataDir: string): NodeOnDisk {
  const db = openDatabase(dataDir);
  try {
    return readNode(db);
  } finally {
    db.close();
  }
}

/**
 * Makes the node a cluster of one, under a new cluster UUID: its journal gets, in a new term, a voting
 * configuration of itself alone and the `reformed` cluster-state change. It then elects itself at start and
 * commits everything its journal holds — including entries the old cluster never committed, and lacking entries
 * it committed without this node: that is the data loss the CLI warns about.
 */
export function unsafeBootstrap(dataDir: string): { readonly clusterUuid: string; readonly term: number } {
  const db = openDatabase(dataDir);
  try {
    const node = readNode(db);
    if (node.lastIndex === 0 || node.clusterState.clusterUuid === null || node.clusterState.clusterName === null) {
      throw new ConclaveError('INVALID_REQUEST', 'This node never belonged to a formed cluster: there is nothing to bootstrap from. Start it normally.');
    }
    const self = node.clusterState.nodes.find((n) => n.id === node.nodeId);
    if (self !== undefined && (!self.roles.masterEligible || self.roles.votingOnly)) {
      throw new ConclaveError('INVALID_REQUEST', 'This node cannot be master (it is not master-eligible, or voting-only): a cluster of it alone could never elect one. Choose a master-eligible survivor.');
    }
    const journal = new JournalStore(db);
    const term = node.term + 1;
    const clusterUuid = randomUUID();
    const change: ClusterChange = { type: 'reformed', clusterUuid, master: node.nodeId };
    // Everything in the journal is declared committed — that is what this command does — so the node applies the
    // `reformed` entry at its first Ready, before it can be elected: were it elected first, it would for a moment be
    // a master of the OLD cluster UUID, in a term above the old members', with them as its replicas, and any of them
    // still running would follow it and truncate their journals to its own.
    const hardState: HardState = { term, votedFor: null, commitIndex: node.lastIndex + 2 };
    db.transaction(() => {
      journal.write([
        { index: node.lastIndex + 1, term, payload: { kind: 'configuration', current: [node.nodeId] } },
        { index: node.lastIndex + 2, term, payload: { kind: 'cluster', change } },
      ]);
      journal.saveHardState(hardState);
    })();
    return { clusterUuid, term };
  } finally {
    db.close();
  }
}

/**
 * Forgets the cluster: journal, hard state, bootstrap view and the content applied from that journal (content is
 * the journal's product: kept, it would be applied twice by the next cluster's journal). The node keeps its id
 * and its blobs (content-addressed, reused when the new cluster's entries name them) and joins like a new node.
 */
export function detachCluster(dataDir: string): void {
  const db = openDatabase(dataDir);
  try {
    readNode(db);
    db.transaction(() => {
      db.prepare('DELETE FROM journal').run();
      // Every state-machine table and key (the list snapshots use): one forgotten here would meet the next
      // cluster's entries at the same indexes (the change feed's rows collide by index and stop the node).
      for (const table of stateMachineTables) db.prepare(`DELETE FROM ${table}`).run();
      clearSearchIndex(db);
      const keys = ['hard_state', 'bootstrap_view', 'applied_index', 'token_key', 'snapshot', 'admin_password_unshown', 'admin_password_reset', ...stateMachineMetaKeys];
      db.prepare(`DELETE FROM meta WHERE key IN (${keys.map(() => '?').join(', ')})`).run(...keys);
      setMeta(db, 'detached_at', new Date().toISOString());
    })();
    // The snapshot files are the old cluster's content too (the next start removes files no snapshot names).
    rmSync(join(dataDir, 'snapshots'), { recursive: true, force: true });
  } finally {
    db.close();
  }
}
