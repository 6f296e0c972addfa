import type { CoreOptions } from '../../src/core/coordinationCore.js';
import type { Message } from '../../src/core/types.js';
import { InvariantChecker } from './invariants.js';
import type { KvCommand } from './kvStateMachine.js';
import { SimNetwork, type NetworkOptions, type Partition } from './simNetwork.js';
import { SimNode, type ClientReply, type CoreTuning } from './simNode.js';
import type { SimRandom } from './simRandom.js';
import { SimScheduler } from './simScheduler.js';
import type { ClientGateway } from './workload.js';

/**
 * A simulated cluster: nodes, the network between them, one clock, and the invariant checker run after every
 * event. It offers the fault operations (crash, restart, pause, resume, partitions, drop rate) to the fault
 * injector and to scenario tests, the client gateway to the workload, and the convergence test of the liveness
 * phase.
 */
export interface ClusterSpec {
  readonly nodeIds: readonly string[];
  /** Nodes that may vote but never become master (voting-only). */
  readonly votingOnly: readonly string[];
  /** Which nodes call bootstrap(nodeIds) at start: all of them, or one. */
  readonly bootstrappers: readonly string[];
  readonly tuning: CoreTuning;
  readonly tickPeriodMin: number;
  readonly tickPeriodMax: number;
  readonly network: NetworkOptions;
  readonly injectedBug?: CoreOptions['injectedBug'];
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
    this.network = new SimNetwork(this.scheduler, random.fork(), spec.network, (message) => {
      if (trace !== null) trace(`deliver ${describeMessage(message)}`);
      this.node(message.to).receive(message);
    });
    const nodeRandom = random.fork();
    const environment = {
      scheduler: this.scheduler,
      random: nodeRandom,
      send: (message: Message) => {
        this.checker.onSend(message, this.node(message.from));
        this.network.send(message);
      },
      observer: this.checker,
      trace,
    };
    this.nodes = spec.nodeIds.map((id) => {
      const node = new SimNode(
        {
          id,
          canBeMaster: !spec.votingOnly.includes(id),
          tuning: spec.tuning,
          tickPeriodMin: spec.tickPeriodMin,
          tickPeriodMax: spec.tickPeriodMax,
          ...(spec.injectedBug !== undefined ? { injectedBug: spec.injectedBug } : {}),
        },
        environment,
      );
      this.byId.set(id, node);
      return node;
    });
    this.gateway = {
      nodeIds: spec.nodeIds,
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

  /** Starts every node at time 0; the bootstrappers bootstrap the full voter list. */
  start(): void {
    for (const node of this.nodes) node.start(this.spec.bootstrappers.includes(node.id) ? this.spec.nodeIds : null);
    this.checker.afterEvent(this.nodes);
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
        state = `${s.role} term ${s.term} master ${s.master ?? '-'} last ${s.lastIndex} commit ${s.commitIndex} voters ${configuration}`;
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
   * Null when the cluster has converged: every node running, one term, exactly one master in it whom everybody
   * follows, the full voting configuration in force, every journal equal in length and committed to its end
   * with the master's last entry from its own term, every state machine applied to the end and identical.
   * Otherwise the first reason it has not.
   */
  convergenceProblem(): string | null {
    const down = this.nodes.filter((n) => n.status !== 'running');
    if (down.length > 0) return `${down.map((n) => `${n.id} ${n.status}`).join(', ')}`;
    const softs = this.nodes.map((n) => ({ node: n, soft: n.core!.softState() }));
    const term = Math.max(...softs.map((s) => s.soft.term));
    const masters = softs.filter((s) => s.soft.role === 'master' && s.soft.term === term);
    if (masters.length !== 1) return `${masters.length} masters in the highest term ${term}`;
    const master = masters[0]!;
    if (!master.node.config.canBeMaster) return `the master ${master.node.id} is a voting-only caretaker`;
    const behind = softs.filter((s) => s.soft.term !== term || s.soft.master !== master.node.id);
    if (behind.length > 0) return `${behind.map((s) => `${s.node.id} (term ${s.soft.term}, master ${s.soft.master})`).join(', ')} not following ${master.node.id} in term ${term}`;
    const configuration = master.soft.configuration;
    if (configuration.next !== undefined || configuration.current.size !== this.nodes.length || !this.nodes.every((n) => configuration.current.has(n.id))) {
      return `the voting configuration is not yet the full one again`;
    }
    const lastIndex = master.soft.lastIndex;
    if (master.node.core!.entryAt(lastIndex)?.term !== term) return `the master's last entry is not from its term ${term}`;
    for (const { node, soft } of softs) {
      if (soft.lastIndex !== lastIndex || soft.commitIndex !== lastIndex) {
        return `${node.id} at last index ${soft.lastIndex} and commit index ${soft.commitIndex}, the master at ${lastIndex}`;
      }
      if (node.storage.stateMachine.appliedIndex !== lastIndex) return `${node.id} applied up to ${node.storage.stateMachine.appliedIndex} of ${lastIndex}`;
    }
    const hashes = new Set(this.nodes.map((n) => n.storage.stateMachine.hash()));
    if (hashes.size !== 1) return `state machines differ at index ${lastIndex}`;
    return null;
  }
}

export function describeMessage(m: Message): string {
  const head = `${m.from}→${m.to} ${m.type} term ${m.term}`;
  switch (m.type) {
    case 'preVoteRequest':
    case 'voteRequest':
      return `${head} last ${m.lastIndex}/${m.lastTerm}`;
    case 'preVoteResponse':
    case 'voteResponse':
      return `${head} ${m.granted ? 'granted' : 'refused'}`;
    case 'appendRequest':
      return `${head} prev ${m.prevIndex}/${m.prevTerm} entries ${m.entries.length === 0 ? '-' : `${m.entries[0]!.index}..${m.entries[m.entries.length - 1]!.index}`} commit ${m.commitIndex}`;
    case 'appendResponse':
      return `${head} ${m.success ? `match ${m.matchIndex}` : `rejected, last ${m.lastIndex}`}`;
  }
}
