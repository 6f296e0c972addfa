import { Counter, Gauge, type Registry } from 'prom-client';

import type { Role } from '../core/types.js';
import type { ClusterRuntime } from '../node/clusterRuntime.js';

/** Every role a node can be in: the role gauge has one series per role, 1 for the current one. */
const roles: readonly Role[] = ['follower', 'preCandidate', 'candidate', 'master'];

/**
 * The node's place in the cluster, read from the runtime at each scrape (term, role, journal indexes, members,
 * replication lag), and the changes it saw (master changes, elections it started), counted as they happen.
 *
 * Replication lag per member is known on the master only (from the members' acknowledgements): elsewhere the
 * series is absent rather than a guess. Its label is the member's node name, bounded by the cluster's size.
 */
export class ClusterMetrics {
  private readonly masterChanges: Counter;
  private readonly elections: Counter;
  private unsubscribe: (() => void) | null = null;

  constructor(registry: Registry, runtime: ClusterRuntime, softwareVersion: string) {
    const registers = [registry];
    new Gauge({
      name: 'conclave_node_info',
      help: 'Always 1; its labels name this node and its software version (join on instance to name a target).',
      labelNames: ['node', 'version'],
      registers,
      collect() {
        this.reset();
        this.set({ node: runtime.self().name, version: softwareVersion }, 1);
      },
    });
    new Gauge({
      name: 'conclave_term',
      help: 'The current term of the coordination layer.',
      registers,
      collect() {
        this.set(runtime.softState().term);
      },
    });
    new Gauge({
      name: 'conclave_role',
      help: 'The role of this node: 1 for the role it is in, 0 for the others (sum over the cluster of role="master" is the number of masters).',
      labelNames: ['role'],
      registers,
      collect() {
        const current = runtime.softState().role;
        for (const role of roles) this.set({ role }, role === current ? 1 : 0);
      },
    });
    new Gauge({
      name: 'conclave_master_known',
      help: '1 while this node knows a master, 0 otherwise (reads are then marked stale, writes refused).',
      registers,
      collect() {
        this.set(runtime.softState().master === null ? 0 : 1);
      },
    });
    new Gauge({
      name: 'conclave_journal_last_index',
      help: 'The index of the last entry in this node\'s journal (committed or not).',
      registers,
      collect() {
        this.set(runtime.softState().lastIndex);
      },
    });
    new Gauge({
      name: 'conclave_journal_commit_index',
      help: 'The highest journal index this node knows to be committed.',
      registers,
      collect() {
        this.set(runtime.softState().commitIndex);
      },
    });
    new Gauge({
      name: 'conclave_journal_applied_index',
      help: 'The highest journal index applied to this node\'s content (what its reads reflect).',
      registers,
      collect() {
        this.set(runtime.appliedIndex);
      },
    });
    new Gauge({
      name: 'conclave_snapshot_index',
      help: 'The index of the snapshot this node\'s journal starts after (0: never compacted).',
      registers,
      collect() {
        this.set(runtime.snapshotStatus().index);
      },
    });
    new Gauge({
      name: 'conclave_cluster_members',
      help: 'Members of the cluster state as this node has applied it.',
      registers,
      collect() {
        this.set(runtime.clusterState().nodes.length);
      },
    });
    new Gauge({
      name: 'conclave_cluster_voters',
      help: 'Members of the voting configuration in force (the union of both during a configuration change).',
      registers,
      collect() {
        const configuration = runtime.softState().configuration;
        this.set(new Set([...configuration.current, ...(configuration.next ?? [])]).size);
      },
    });
    new Gauge({
      name: 'conclave_cluster_in_sync_members',
      help: 'Members of the in-sync set (every one of them applies a write before it is acknowledged).',
      registers,
      collect() {
        this.set(runtime.clusterState().inSync.length);
      },
    });
    new Gauge({
      name: 'conclave_replication_lag_entries',
      help: 'On the master only: entries committed that the member has not applied yet, by member node name.',
      labelNames: ['member'],
      registers,
      collect() {
        this.reset();
        const soft = runtime.softState();
        if (soft.role !== 'master') return;
        const self = runtime.self().id;
        const followers = runtime.coordinator.core.followerStates();
        for (const node of runtime.clusterState().nodes) {
          const applied = node.id === self ? runtime.appliedIndex : followers.get(node.id)?.appliedIndex;
          if (applied === undefined) continue;
          this.set({ member: node.name }, Math.max(0, soft.commitIndex - applied));
        }
      },
    });
    this.masterChanges = new Counter({
      name: 'conclave_master_changes_total',
      help: 'Times this node saw a new master (another node, or itself, after a term without one or with another).',
      registers,
    });
    this.elections = new Counter({
      name: 'conclave_elections_total',
      help: 'Elections this node started: times it became a candidate for a new term (pre-votes that went no further are not counted).',
      registers,
    });
    this.watch(runtime);
  }

  private watch(runtime: ClusterRuntime): void {
    let last = runtime.softState();
    this.unsubscribe = runtime.onChange(() => {
      const soft = runtime.softState();
      if (soft.master !== null && soft.master !== last.master) this.masterChanges.inc();
      // A candidate (or a master that won in one step, a cluster of one) in a term after the last one seen.
      if (soft.term > last.term && (soft.role === 'candidate' || soft.role === 'master')) this.elections.inc();
      last = soft;
    });
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
