import type { BootstrapMethod } from '../../src/core/bootstrap.js';
import type { CoordinatorBug } from '../../src/core/clusterCoordinator.js';
import type { RuntimeBug } from '../../src/node/writeTracker.js';
import { FaultInjector, type FaultOptions } from './faults.js';
import { SimulationViolation } from './invariants.js';
import { checkHistory, type CheckResult } from './linearizability.js';
import { SimCluster, type ClusterSpec } from './simCluster.js';
import { SimRandom } from './simRandom.js';
import { Workload, type WorkloadOptions } from './workload.js';

/**
 * One simulator run, entirely determined by its seed:
 *
 * 1. the seed picks a cluster (3, 5 or 7 nodes; sometimes a voting-only node, a node that is not eligible, a
 *    node that starts late and joins), how it bootstraps (initial master names or expect N), core and cluster
 *    tuning, journal compaction, network behaviour, workload and run length;
 * 2. safety phase: the nodes discover each other and bootstrap; clients run operations while the fault injector
 *    crashes, pauses, partitions, loses messages and plays an operator changing the cluster state; the
 *    invariant checker runs after every event;
 * 3. liveness phase: everything is healed and faults stop (and late nodes are started); within
 *    `livenessBoundUnits` (20 election timeouts at the slowest clock) plus a catch-up allowance (4 × the maximum
 *    latency and 2 × the longest fsync per append window the longest journal needs: a follower syncs every window
 *    before it answers) the cluster must converge (see
 *    SimCluster.convergenceProblem) and every client operation must end;
 * 4. the journals are compared pairwise and the clients' history is checked for linearizability.
 *
 * A failure names the seed and the command that replays it.
 */
/** A bug in the coordination layer (src/core) or in the runtime's write path (src/node/writeTracker.ts). */
export type InjectedBug = CoordinatorBug | RuntimeBug;

export interface SimulationOptions {
  /** Builds every core with this bug: the simulator must then report a violation (a mutation check). */
  readonly injectedBug?: InjectedBug;
  /** Keep a trace of events (for a replay of one seed). */
  readonly trace?: boolean;
}

export interface SimulationResult {
  readonly seed: number;
  readonly ok: boolean;
  /** What broke, when not ok. */
  readonly failure?: string;
  readonly phase?: 'safety' | 'liveness' | 'history';
  /** Simulated time at the end (or at the failure). */
  readonly time: number;
  /** The run's parameters, in one line. */
  readonly description: string;
  readonly stats: SimulationStats;
  readonly replay: string;
  readonly traceLines?: readonly string[];
}

export interface SimulationStats {
  events: number;
  committed: number;
  elections: number;
  operations: { invoked: number; ok: number; fail: number; info: number };
  faults: Record<string, number>;
  messages: { sent: number; straggled: number; delivered: number; dropped: number; blocked: number; duplicated: number };
  /** Time the liveness phase took to converge, in simulated units. */
  convergenceUnits: number;
}

/** The election timeout in ticks, and the slowest clock's tick period: the liveness bound is stated in these. */
export const electionTimeoutTicks = 10;
export const tickPeriodMin = 9;
export const tickPeriodMax = 11;
/** The liveness bound: 20 election timeouts at the slowest clock. */
export const livenessBoundUnits = 20 * electionTimeoutTicks * tickPeriodMax;

export function replayCommand(seed: number, options: SimulationOptions = {}): string {
  return `npm run sim -- --seed ${seed}${options.injectedBug !== undefined ? ` --bug ${options.injectedBug}` : ''}`;
}

interface Plan {
  readonly spec: ClusterSpec;
  readonly workload: WorkloadOptions;
  readonly faults: FaultOptions;
  readonly safetyUnits: number;
  readonly description: string;
}

/** Everything the seed decides before the run starts. */
function plan(random: SimRandom, options: SimulationOptions): Plan {
  const size = random.weighted([[4, 3], [4, 5], [2, 7]] as const);
  const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  // Mixed roles: sometimes a voting-only node (votes, never master), sometimes a node that is not
  // master-eligible at all (replicates and serves, never votes); never the first node, so one can always lead.
  const votingOnly = random.chance(0.25) ? random.pick(ids.slice(1)) : null;
  const dataOnly = random.chance(0.3) ? random.pick(ids.slice(1).filter((id) => id !== votingOnly)) : null;
  // Sometimes one node starts late and joins the running cluster.
  const safetyUnits = random.between(3000, 6000);
  const lateId = random.chance(0.3) ? random.pick(ids.slice(1)) : null;
  const nodes = ids.map((id) => ({
    id,
    roles: { masterEligible: id !== dataOnly, votingOnly: id === votingOnly },
    startAt: id === lateId ? random.between(200, Math.floor(safetyUnits / 2)) : 0,
  }));
  const initialEligible = nodes.filter((n) => n.startAt === 0 && n.roles.masterEligible);
  const allEligible = nodes.filter((n) => n.roles.masterEligible);
  let bootstrap: BootstrapMethod;
  // Expect N is only safe when N exceeds half of all eligible nodes (two groups of unformed nodes could each
  // reach a smaller N): possible only when the first start has that many.
  const expectMin = Math.floor(allEligible.length / 2) + 1;
  if (random.chance(0.5) || initialEligible.length < expectMin) {
    // By name: all the eligible nodes of the first start, or a subset with at least one that can lead.
    const leaders = initialEligible.filter((n) => !n.roles.votingOnly);
    const names = random.chance(0.5) ? initialEligible.map((n) => n.id) : [random.pick(leaders).id, ...initialEligible.filter(() => random.chance(0.5)).map((n) => n.id)];
    bootstrap = { kind: 'initialMasterNodes', names: [...new Set(names)].sort() };
  } else {
    bootstrap = { kind: 'expect', count: random.between(expectMin, initialEligible.length) };
  }
  const latencyMin = random.between(1, 3);
  const probeIntervalTicks = random.between(2, 5);
  const spec: ClusterSpec = {
    nodes,
    clusterName: 'sim',
    bootstrap,
    tuning: {
      electionTimeoutTicks,
      heartbeatIntervalTicks: random.between(2, 4),
      appendEntriesMax: random.pick([1, 2, 4, 16, 64]),
      inflightAppendsMax: random.pick([1, 2, 4, 8]),
      uncommittedEntriesMax: random.pick([2, 8, 64]),
      // Tick periods within [9, 11] differ by at most 11/9 = (100 + 10) / (100 - 10): the bound the leases rest on.
      clockDriftPercent: 10,
      readIndexPendingMax: random.pick([1, 4, 64]),
      // Payloads are tens of bytes: 64 makes most appends carry one entry, 512 a handful, 1 MiB leaves the count.
      appendBytesMax: random.pick([64, 512, 1024 * 1024]),
    },
    coordinatorTuning: {
      probeIntervalTicks,
      discoveryInfoTicksMax: 4 * probeIntervalTicks,
      discoveredPeersMax: 16,
      joinRetryTicks: random.between(3, 10),
      nodeFailureTimeoutTicks: electionTimeoutTicks * random.between(1, 3),
      inSyncTimeoutTicks: electionTimeoutTicks * random.between(1, 3),
      publishTimeoutTicks: random.between(30, 100),
      pendingChangesMax: 8,
    },
    // A copy every N applied entries, compacted at once or once a few more are applied (see src/node/compaction.ts).
    compaction: random.pick([null, null, { entriesMin: 4, retainEntries: 0 }, { entriesMin: 16, retainEntries: 2 }, { entriesMin: 64, retainEntries: 8 }]),
    // An fsync at once, or lasting up to about a message's flight, or several: while it lasts the node steps what
    // arrives, and a master's appends are out before its own entries are durable.
    syncDelayMax: random.pick([0, 3, 12, 40]),
    tickPeriodMin,
    tickPeriodMax,
    network: {
      latencyMin,
      latencyMax: latencyMin + random.between(2, 25),
      slowProbability: random.pick([0, 0.01, 0.05]),
      slowFactor: random.between(3, 10),
      dropRate: random.pick([0, 0, 0.01, 0.05]),
      duplicateRate: random.pick([0, 0.01, 0.05]),
    },
    ...(options.injectedBug !== undefined ? { injectedBug: options.injectedBug } : {}),
  };
  const workload: WorkloadOptions = {
    clients: random.between(2, 5),
    keys: random.between(1, 3),
    operationTimeoutUnits: random.between(300, 800),
    thinkUnitsMax: random.pick([10, 40, 100]),
    latencyUnitsMax: random.between(1, 10),
  };
  const faults: FaultOptions = {
    intervalUnitsMin: 30,
    intervalUnitsMax: random.pick([150, 300, 600]),
    durationUnitsMin: 60,
    durationUnitsMax: random.pick([300, 800]),
  };
  const description =
    `${size} nodes${votingOnly !== null ? ` (${votingOnly} voting-only)` : ''}${dataOnly !== null ? ` (${dataOnly} not eligible)` : ''}` +
    `${lateId !== null ? ` (${lateId} starts at ${nodes.find((n) => n.id === lateId)!.startAt})` : ''}, ` +
    `bootstrap ${bootstrap.kind === 'expect' ? `expect ${bootstrap.count}` : bootstrap.kind === 'initialMasterNodes' ? `by names ${bootstrap.names.join(',')}` : 'none'}, ` +
    `heartbeat ${spec.tuning.heartbeatIntervalTicks} ticks, append batch ${spec.tuning.appendEntriesMax} (${spec.tuning.appendBytesMax ?? '∞'} bytes), inflight ${spec.tuning.inflightAppendsMax}, ` +
    `uncommitted ${spec.tuning.uncommittedEntriesMax}, compact ${spec.compaction === null ? 'never' : `every ${spec.compaction.entriesMin} keeping ${spec.compaction.retainEntries}`}, fsync up to ${spec.syncDelayMax}, ` +
    `node failure ${spec.coordinatorTuning.nodeFailureTimeoutTicks} ticks, latency ${latencyMin}..${spec.network.latencyMax}, ` +
    `drop ${spec.network.dropRate}, dup ${spec.network.duplicateRate}, ${workload.clients} clients on ${workload.keys} keys, ` +
    `safety phase ${safetyUnits} units${options.injectedBug !== undefined ? `, injected bug ${options.injectedBug}` : ''}`;
  return { spec, workload, faults, safetyUnits, description };
}

export function runSimulation(seed: number, options: SimulationOptions = {}): SimulationResult {
  const random = new SimRandom(seed);
  const { spec, workload: workloadOptions, faults: faultOptions, safetyUnits, description } = plan(random, options);
  const cluster = new SimCluster(spec, random.fork(), options.trace === true ? { trace: true } : {});
  const workload = new Workload(cluster.scheduler, random.fork(), cluster.gateway, workloadOptions);
  const faultRandom = random.fork();
  const operator = random.fork();
  // Forked last, so that adding full disks left every other stream of a seed as it was.
  const faults = new FaultInjector(cluster, faultRandom, faultOptions, random.fork());
  let phase: 'safety' | 'liveness' | 'history' = 'safety';
  let convergenceUnits = 0;

  const finish = (failure?: string): SimulationResult => {
    const network = cluster.network.stats;
    return {
      seed,
      ok: failure === undefined,
      ...(failure !== undefined ? { failure, phase } : {}),
      time: cluster.now,
      description,
      replay: replayCommand(seed, options),
      stats: {
        events: cluster.scheduler.executed,
        committed: cluster.checker.committedCount,
        elections: cluster.checker.elections,
        operations: { invoked: workload.stats.invoked, ok: workload.stats.ok, fail: workload.stats.fail, info: workload.stats.info },
        faults: { ...faults.counts },
        messages: { ...network },
        convergenceUnits,
      },
      ...(cluster.traceLines !== null ? { traceLines: cluster.traceLines } : {}),
    };
  };

  try {
    cluster.start();
    workload.start();
    faults.start();
    cluster.runUntil(safetyUnits);
    cluster.checker.checkJournalsPairwise(cluster.nodes);

    phase = 'liveness';
    faults.healEverything();
    workload.stopIssuing();
    cluster.checker.afterEvent(cluster.nodes);
    const livenessStart = cluster.now;
    // Besides the 20 election timeouts, a node far behind needs time to copy the journal: one batch-window per
    // round trip at worst, with slack for slow messages. An append is bounded by bytes as well as by count: with
    // a small byte bound it carries a single entry (counted as one per KiB of the bound, which no entry of the
    // simulator's reaches).
    const backlog = Math.max(0, ...cluster.nodes.map((n) => n.storage.lastIndex));
    const entriesPerAppend = Math.min(spec.tuning.appendEntriesMax, Math.max(1, Math.floor((spec.tuning.appendBytesMax ?? Number.POSITIVE_INFINITY) / 1024)));
    const window = entriesPerAppend * spec.tuning.inflightAppendsMax;
    const livenessBound = livenessBoundUnits + Math.ceil(backlog / window) * (4 * spec.network.latencyMax + 2 * spec.syncDelayMax);
    // The operator's part: once there is a master, clear the voting exclusions (faults may have left some), so
    // that the configuration must grow back to what the rules give for the whole cluster; it keeps asking.
    const restoreConfiguration = () => {
      if (cluster.now - livenessStart > livenessBound) return;
      const master = cluster.master();
      if (master !== null && master.canBeMaster && master.coordinator!.clusterState().votingExclusions.length > 0) {
        const accepted = master.proposeClusterChange({ type: 'votingExclusionsCleared' });
        if (accepted) cluster.trace(`operator: ${master.id} asked to clear the voting exclusions`);
      }
      cluster.scheduler.after(operator.between(40, 120), restoreConfiguration);
    };
    restoreConfiguration();
    const converged = cluster.runUntil(livenessStart + livenessBound, () => workload.outstanding === 0 && cluster.convergenceProblem() === null);
    convergenceUnits = cluster.now - livenessStart;
    if (!converged) {
      const problem = cluster.convergenceProblem();
      const pending = workload.outstanding;
      return finish(
        `no convergence within ${livenessBound} units (20 election timeouts and a catch-up allowance) of healing: ` +
          (problem ?? `${pending} client operations still outstanding`),
      );
    }
    cluster.checker.checkJournalsPairwise(cluster.nodes);

    phase = 'history';
    const verdict: CheckResult = checkHistory(workload.history, { searchStepsMax: 2_000_000 });
    if (!verdict.ok) {
      return finish(`history of ${workload.history.length} events is not linearizable (${verdict.verdict}): ${verdict.failure?.explanation.message ?? ''}`);
    }
    return finish();
  } catch (err) {
    if (err instanceof SimulationViolation) return finish(`invariant violated at time ${cluster.now}: ${err.message}`);
    const message = err instanceof Error ? err.message : String(err);
    // The core's own invariant() checks fire too (e.g. "two masters in term"): as much a violation as ours.
    if (message.startsWith('invariant violated')) return finish(`core ${message} (at time ${cluster.now})`);
    return finish(`simulator error at time ${cluster.now}: ${err instanceof Error ? (err.stack ?? message) : message}`);
  }
}

/** The report of a failed run: the seed, what broke, and the one line that replays it. */
export function describeFailure(result: SimulationResult): string {
  return [
    `seed ${result.seed} FAILED in the ${result.phase} phase: ${result.failure}`,
    `  run: ${result.description}`,
    `  replay: ${result.replay}`,
  ].join('\n');
}
