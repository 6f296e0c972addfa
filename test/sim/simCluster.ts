import type { BootstrapMethod } from '../../src/core/bootstrap.js';
import type { ClusterMessage } from '../../src/core/clusterMessages.js';
import type { NodeRoles } from '../../src/core/clusterState.js';
import type { InjectedBug } from './simulate.js';
import { reconfigure } from '../../src/core/votingConfiguration.js';
import { InvariantChecker } from './invariants.js';
import type { KvCommand } from './kvStateMachine.js';
import { SimNetwork, type NetworkOptions, type Partition, type Straggling } from './simNetwork.js';
import { SimNode, type ClientReply, type CoordinatorTuning, type CoreTuning, type SimCompaction } from './simNode.js';
import type { SimRandom } from './simRandom.js';
import { SimScheduler } from './simScheduler.js';
import type { ClientGateway } from './workload.js';

/**
 * A simulated cluster: nodes, the network between them, one clock, and the invariant checker run after every
 * event. It offers the fault operations (crash, restart, pause, resume, partitions, drop rate) to the fault
 * injector and to scenario tests, the client gateway to the workload, and the convergence test of the liveness
 * phase.
 */
export interface SimNodeSpec {
  readonly id: string;
  readonly roles: NodeRoles;
  /** When the node is first started (0: with the cluster; later: it joins a running cluster; null: never by itself). */
  readonly startAt: number | null;
  /** A node configured for another cluster (it must never join this one). */
  readonly clusterName?: string;
  /** How this node bootstraps, when not the cluster's way. */
  readonly bootstrap?: BootstrapMethod;
  /** Its software version (default 1.0.0). */
  readonly version?: string;
}

export interface ClusterSpec {
  readonly nodes: readonly SimNodeSpec[];
  readonly clusterName: string;
  readonly bootstrap: BootstrapMethod;
  readonly tuning: CoreTuning;
  readonly coordinatorTuning: CoordinatorTuning;
  readonly compaction: SimCompaction | null;
  /** The longest an fsync takes (NodeConfig.syncDelayMax); 0: at once. */
  readonly syncDelayMax: number;
  readonly tickPeriodMin: number;
  readonly tickPeriodMax: number;
  readonly network: NetworkOptions;
  readonly injectedBug?: InjectedBug;
}

export class SimCluster {
  readonly scheduler = new SimScheduler();
  readonly network: SimNetwork;
  readonly checker = new InvariantChecker();
  readonly nodes: readonly SimNode[];
  private readonly byId = new Map<string, SimNode>();
  /** Trace lines, when tracing. */
  readonly traceLines: string[] | null;
  /** The workload's way in: a request arriving at a node. */
  readonly gateway: ClientGateway;

  constructor(
    readonly spec: ClusterSpec,
    random: SimRandom,
    options: { readonly trace?: boolean } = {},
  ) {
    this.traceLines = options.trace === true ? [] : null;
    const trace = this.traceLines === null ? null : (line: string) => this.traceLines!.push(`${String(this.scheduler.now).padStart(6)} ${line}`);
    const nodeIds = spec.nodes.map((n) => n.id);
    this.network = new SimNetwork(this.scheduler, random.fork(), spec.network, (message) => {
      if (trace !== null) trace(`deliver ${describeMessage(message)}`);
      this.node(message.to).receive(message);
    });
    const nodeRandom = random.fork();
    const environment = {
      scheduler: this.scheduler,
      random: nodeRandom,
      send: (message: ClusterMessage) => {
        this.checker.onSend(message, this.node(message.from));
        this.network.send(message);
      },
      observer: this.checker,
      trace,
    };
    this.nodes = spec.nodes.map(({ id, roles, clusterName, bootstrap, version }) => {
      const node = new SimNode(
        {
          id,
          roles,
          clusterName: clusterName ?? spec.clusterName,
          version: version ?? '1.0.0',
          bootstrap: bootstrap ?? spec.bootstrap,
          discoveryPeers: nodeIds,
          tuning: spec.tuning,
          coordinatorTuning: spec.coordinatorTuning,
          compaction: spec.compaction,
          syncDelayMax: spec.syncDelayMax,
          tickPeriodMin: spec.tickPeriodMin,
          tickPeriodMax: spec.tickPeriodMax,
          // As in production, where replication.writeTimeoutMs (10 s) is 20 election timeouts (500 ms).
          writeTimeoutUnits: 20 * spec.tuning.electionTimeoutTicks * spec.tickPeriodMax,
          ...(spec.injectedBug !== undefined ? { injectedBug: spec.injectedBug } : {}),
        },
        environment,
      );
      this.byId.set(id, node);
      return node;
    });
    this.gateway = {
      nodeIds,
      request: (nodeId: string, command: KvCommand, reply: (r: ClientReply) => void) => {
        trace?.(`client request at ${nodeId}: ${JSON.stringify(command)}`);
        this.node(nodeId).request(command, reply);
      },
    };
  }

  get now(): number {
    return this.scheduler.now;
  }

  node(id: string): SimNode {
    const node = this.byId.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  trace(line: string): void {
    this.traceLines?.push(`${String(this.scheduler.now).padStart(6)} ${line}`);
  }

  /** Starts the nodes of time 0 now and schedules the later ones; they discover each other and bootstrap or join. */
  start(): void {
    for (const spec of this.spec.nodes) {
      const node = this.node(spec.id);
      if (spec.startAt === 0) node.start();
      else if (spec.startAt !== null) {
        this.scheduler.after(spec.startAt, () => {
          if (!node.started) {
            this.trace(`start ${node.id}`);
            node.start();
          }
        });
      }
    }
    this.checker.afterEvent(this.nodes);
  }

  /** Starts a node that has not been started yet (the liveness phase starts the late ones that are still due). */
  startNow(id: string): void {
    const node = this.node(id);
    if (!node.started) node.start();
  }

  /**
   * Runs events up to and including `time` (the clock then stands at `time`), checking the invariants after
   * each; stops early, returning true, as soon as `until` holds after an event.
   */
  runUntil(time: number, until?: () => boolean): boolean {
    while (this.scheduler.nextTime() <= time) {
      this.scheduler.runNext();
      this.checker.afterEvent(this.nodes);
      if (this.traceLines !== null) this.traceStateChanges();
      if (until !== undefined && until()) return true;
    }
    this.scheduler.advanceTo(time);
    return until !== undefined && until();
  }

  runFor(units: number, until?: () => boolean): boolean {
    return this.runUntil(this.scheduler.now + units, until);
  }

  private readonly lastTracedState = new Map<string, string>();

  /** In a trace, a line whenever a node's role, term, master, commit index or configuration changes. */
  private traceStateChanges(): void {
    for (const node of this.nodes) {
      const core = node.core;
      let state = 'down';
      if (core !== null) {
        const s = core.softState();
        const configuration = `[${[...s.configuration.current].join(',')}]${s.configuration.next !== undefined ? `→[${[...s.configuration.next].join(',')}]` : ''}`;
        const cluster = node.coordinator!.clusterState();
        state =
          `${s.role} term ${s.term} master ${s.master ?? '-'} last ${s.lastIndex} commit ${s.commitIndex} voters ${configuration} ` +
          `members [${cluster.nodes.map((n) => n.id).join(',')}] in-sync [${cluster.inSync.join(',')}] excluded [${cluster.votingExclusions.join(',')}]`;
      }
      if (this.lastTracedState.get(node.id) !== state) {
        this.lastTracedState.set(node.id, state);
        this.trace(`  ${node.id}: ${state}`);
      }
    }
  }

  // ---------------------------------------------------------------- faults

  crash(id: string): void {
    this.node(id).crash();
  }

  restart(id: string): void {
    const node = this.node(id);
    if (node.status === 'crashed') node.restart();
  }

  pause(id: string): void {
    this.node(id).pause();
  }

  resume(id: string): void {
    this.node(id).resume();
  }

  partition(partition: Partition): void {
    this.trace(`partition ${partition.description}`);
    this.network.setPartition(partition);
  }

  heal(): void {
    if (this.network.partition !== null) this.trace('heal the network');
    this.network.heal();
  }

  /** Holds back messages on some links for a while (see SimNetwork); null ends it. */
  straggle(straggling: Straggling | null): void {
    this.trace(straggling === null ? 'stragglers over' : `stragglers ${straggling.description}`);
    this.network.setStraggling(straggling);
  }

  /** Time units of an election timeout at the slowest clock: how the faults measure what lasts "several timeouts". */
  get electionTimeoutUnits(): number {
    return this.spec.tuning.electionTimeoutTicks * this.spec.tickPeriodMax;
  }

  // ---------------------------------------------------------------- queries

  /** Nodes whose process exists (running or paused). */
  liveNodes(): SimNode[] {
    return this.nodes.filter((n) => n.core !== null);
  }

  /** The running master with the highest term, if any. */
  master(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes) {
      if (node.status !== 'running') continue;
      const soft = node.core!.softState();
      if (soft.role === 'master' && soft.term > bestTerm) {
        best = node;
        bestTerm = soft.term;
      }
    }
    return best;
  }

  /**
   * Null when the cluster has converged: every node running, one term, exactly one master in it (a real one, not a
   * voting-only caretaker) whom everybody follows; every node a member of the named cluster and in the in-sync
   * set; the voting configuration final and exactly what the rules give for the live eligible members; every
   * journal equal in length and committed to its end with the master's last entry from its own term; every state
   * machine and cluster state applied to the end and identical. Otherwise the first reason it has not.
   */
  convergenceProblem(): string | null {
    const down = this.nodes.filter((n) => n.status !== 'running');
    if (down.length > 0) return `${down.map((n) => `${n.id} ${n.started ? n.status : 'not started'}`).join(', ')}`;
    const softs = this.nodes.map((n) => ({ node: n, soft: n.core!.softState() }));
    const term = Math.max(...softs.map((s) => s.soft.term));
    const masters = softs.filter((s) => s.soft.role === 'master' && s.soft.term === term);
    if (masters.length !== 1) return `${masters.length} masters in the highest term ${term}`;
    const master = masters[0]!;
    if (!master.node.canBeMaster) return `the master ${master.node.id} is a voting-only caretaker`;
    const behind = softs.filter((s) => s.soft.term !== term || s.soft.master !== master.node.id);
    if (behind.length > 0) return `${behind.map((s) => `${s.node.id} (term ${s.soft.term}, master ${s.soft.master})`).join(', ')} not following ${master.node.id} in term ${term}`;
    const cluster = master.node.coordinator!.clusterState();
    if (cluster.clusterUuid === null) return 'the cluster has no UUID yet';
    const outside = this.nodes.filter((n) => !cluster.nodes.some((m) => m.id === n.id));
    if (outside.length > 0) return `${outside.map((n) => n.id).join(', ')} not (yet) members`;
    const notInSync = this.nodes.filter((n) => !cluster.inSync.includes(n.id));
    if (notInSync.length > 0) return `${notInSync.map((n) => n.id).join(', ')} not (yet) in sync`;
    const configuration = master.soft.configuration;
    const eligible = cluster.nodes.filter((n) => n.roles.masterEligible).map((n) => n.id);
    const wanted = reconfigure({
      liveEligible: new Set(eligible),
      excluded: new Set(cluster.votingExclusions),
      master: master.node.id,
      current: configuration.current,
      canLead: new Set(cluster.nodes.filter((n) => n.roles.masterEligible && !n.roles.votingOnly).map((n) => n.id)),
    });
    if (configuration.next !== undefined || !sameSet(wanted, configuration.current)) {
      return `the voting configuration is [${[...configuration.current].join(',')}]${configuration.next !== undefined ? ' (joint)' : ''}, the rules want [${[...wanted].join(',')}]`;
    }
    const lastIndex = master.soft.lastIndex;
    if (master.node.storage.termAt(lastIndex) !== term) return `the master's last entry is not from its term ${term}`;
    for (const { node, soft } of softs) {
      if (soft.lastIndex !== lastIndex || soft.commitIndex !== lastIndex) {
        return `${node.id} at last index ${soft.lastIndex} and commit index ${soft.commitIndex}, the master at ${lastIndex}`;
      }
      if (node.storage.stateMachine.appliedIndex !== lastIndex) return `${node.id} applied up to ${node.storage.stateMachine.appliedIndex} of ${lastIndex}`;
    }
    const hashes = new Set(this.nodes.map((n) => n.storage.stateMachine.hash()));
    if (hashes.size !== 1) return `state machines differ at index ${lastIndex}`;
    const clusterStates = new Set(this.nodes.map((n) => JSON.stringify(n.coordinator!.clusterState())));
    if (clusterStates.size !== 1) return `cluster states differ at index ${lastIndex}`;
    return null;
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((id) => b.has(id));
}

export function describeMessage(m: ClusterMessage): string {
  switch (m.type) {
    case 'probeRequest':
    case 'probeResponse':
      return `${m.from}→${m.to} ${m.type} ${m.info.hasJournal ? `cluster ${m.info.clusterUuid ?? '?'} master ${m.info.master ?? '-'}` : `unformed [${m.info.unformedEligible.join(',')}]`}`;
    case 'joinRequest':
      return `${m.from}→${m.to} joinRequest`;
    case 'joinResponse':
      return `${m.from}→${m.to} joinResponse ${m.outcome}${m.master !== null ? ` (master ${m.master})` : ''}`;
    default:
      break;
  }
  const head = `${m.from}→${m.to} ${m.type} term ${m.term}`;
  switch (m.type) {
    case 'preVoteRequest':
    case 'voteRequest':
      return `${head} last ${m.lastIndex}/${m.lastTerm}`;
    case 'preVoteResponse':
    case 'voteResponse':
      return `${head} ${m.granted ? 'granted' : 'refused'}`;
    case 'appendRequest':
      return `${head} prev ${m.prevIndex}/${m.prevTerm} entries ${m.entries.length === 0 ? '-' : `${m.entries[0]!.index}..${m.entries[m.entries.length - 1]!.index}`} commit ${m.commitIndex}${m.lease !== undefined ? ' lease' : ''}`;
    case 'appendResponse':
      return `${head} ${m.success ? `match ${m.matchIndex}` : `rejected, last ${m.lastIndex}`} applied ${m.appliedIndex}`;
    case 'snapshotRequest':
      return `${head} snapshot ${m.snapshot.index}/${m.snapshot.term}`;
    case 'readIndexRequest':
      return `${head} read ${m.id}`;
    case 'readIndexResponse':
      return `${head} read ${m.id} ${m.index === null ? 'refused' : `at ${m.index}`}`;
  }
}
