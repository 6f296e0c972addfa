import type { BootstrapMethod } from '../../src/core/bootstrap.js';
import type { ClusterChange, ClusterState } from '../../src/core/clusterState.js';
import type { ClusterMessage } from '../../src/core/clusterMessages.js';
import type { Entry } from '../../src/core/types.js';
import { describeMessage, SimCluster, type ClusterSpec, type SimNodeSpec } from './simCluster.js';
import { symmetricPartition } from './simNetwork.js';
import type { ClientReply, SimNode } from './simNode.js';
import { SimRandom } from './simRandom.js';
import type { InjectedBug } from './simulate.js';

/**
 * Transcript tests, in the manner of etcd-io/raft's testdata: a text file of commands, each followed by `----` and
 * the output it must produce, blocks separated by blank lines, `#` lines as comments. `runTranscript` executes
 * the commands against a simulated cluster (the real coordinator and core, a quiet seeded network) and returns
 * the file as it should read; the test compares, and with CONCLAVE_REWRITE=1 writes it back.
 *
 * Commands:
 *   cluster nodes=n1,n2,.. [voting-only=..] [data=..] [late=..] [stranger=..] [bootstrap=names:n1,n2|expect:3]
 *           [versions=ID:1.2.3,..] [compact=N [retain=N]] [seed=S]
 *           [append-entries=N] [append-bytes=N] [inflight=N]
 *                                    a new cluster; late and stranger nodes are not started (a stranger is
 *                                    configured for another cluster); versions default to 1.0.0; bootstrap
 *                                    defaults to the names of all eligible nodes started with the cluster;
 *                                    compact: a copy every N applied entries, compacted at `retain` later;
 *                                    appends carry at most append-entries (16) and append-bytes (no bound),
 *                                    with inflight (4) appends in flight
 *   start ID..  | stop ID..           first start or restart; crash
 *   partition A,B | C,D  |  heal      a symmetric partition; heal it
 *   run units=N                       let time pass
 *   stabilize                         run until nothing in the status changes for a while; print the status
 *   status                            each node's role, term and voters; the master's view of the cluster state
 *   write KEY=VALUE [via=ID]          a client write through ID (default: whoever is master); how it ended
 *   read KEY [via=ID]                 a client read through the journal
 *   exclude ID.. | clear-exclusions | remove ID | set NAME=VALUE
 *                                    an operator's cluster-state change, asked of the master, until applied
 *   joins                             each node's last join answer
 *   snapshots                         each node's snapshot index, and how many it installed from a master
 *   values ID                         what ID's state machine holds, and its applied index
 *   pause ID.. | resume ID..          a stopped process (no ticks; what it is sent waits); resumed as the runtime
 *                                    does (missed ticks skipped, then the waiting input read)
 *   hold [from=ID] [to=ID] [type=T] [granted=false]
 *                                    keep every later message that matches until `deliver` (T: a message type)
 *   deliver [from=ID] [to=ID] [type=T] [granted=false]
 *                                    hand over the held messages that match, oldest first, and list them
 *   deliver-all                       end every hold and hand over everything held
 *   run-until ID=ROLE [units=N]      let time pass until ID has ROLE (master, candidate, ...), at most N units
 *   leases                            which nodes may serve sequential reads from their own state
 *   seqread KEY via=ID                a sequential read at ID: from its lease, or through the master's read index
 *   disk ID full|nearly-full|ok       a full disk stores nothing that writes entries; a nearly full one stores
 *                                    journal entries but refuses any Ready that applies
 *
 * Message level, in the manner of etcd-io/raft's interaction tests — the same nodes, the same Ready loop:
 *   manual | auto                     manual: clocks stand still, every message is held, Readys wait for `ready`;
 *                                    auto: back to time, everything held delivered, every Ready carried out
 *   tick ID [N]                       N ticks of ID's clock (1)
 *   skip-ticks ID N                   N ticks that passed while ID could not act (the runtime's catch-up)
 *   ready ID..                        one Ready of each ID through the runtime's loop, printed: hard state,
 *                                    entries stored, entries applied, messages sent, reads confirmed, and on
 *                                    a master each follower's progress
 *   held [filters] | drop [filters]   list the held messages that match; lose them
 *   settle [cut=ID,..]                every Ready and every held message (but those to or from `cut`) until
 *                                    nothing is left; no tick passes
 *   propose ID KEY=VALUE|KEY=A..B ..  client writes queued at ID; their answers print after the command during
 *                                    which they arrive
 *   progress ID                       a master's view of each follower
 * (`deliver` and `hold` above take the same filters: from=, to=, type=, granted=.)
 */
const quietRoundsForStable = 5;
/** `settle` gives up after this many rounds of Readys and deliveries. */
const settleRoundsMax = 10_000;
const stabilizeRoundsMax = 200;

interface Block {
  readonly comments: readonly string[];
  readonly command: string;
}

/** `injectedBug`: run every cluster of the transcript with it (a mutation check: the output must then differ). */
export function runTranscript(text: string, injectedBug?: InjectedBug): string {
  const out: string[] = [];
  const driver = new TranscriptDriver(injectedBug);
  for (const block of parse(text)) {
    out.push(...block.comments);
    if (block.command === '') continue;
    out.push(block.command, '----');
    let result: string;
    try {
      result = driver.execute(block.command);
    } catch (err) {
      result = `error: ${err instanceof Error ? err.message : String(err)}`;
    }
    out.push(result, '');
  }
  while (out.length > 0 && out[out.length - 1] === '') out.pop();
  return out.join('\n') + '\n';
}

function parse(text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split('\n');
  let comments: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('#')) {
      comments.push(line);
      continue;
    }
    if (line.trim() === '') {
      if (comments.length > 0 && comments[comments.length - 1] !== '') comments.push('');
      continue;
    }
    // A command; skip its recorded output (up to the next blank line).
    if (lines[i + 1] === '----') {
      i += 2;
      while (i < lines.length && lines[i]!.trim() !== '') i++;
    }
    blocks.push({ comments, command: line.trim() });
    comments = [];
  }
  if (comments.length > 0) blocks.push({ comments: comments.filter((c, i) => c !== '' || i < comments.length - 1), command: '' });
  return blocks;
}

class TranscriptDriver {
  private cluster: SimCluster | null = null;
  /** In step mode (manual): see the message-level commands. */
  private stepping = false;
  /** Answers to proposals, printed after the command during which they arrived. */
  private readonly answers: string[] = [];

  constructor(private readonly injectedBug: InjectedBug | undefined) {}

  execute(command: string): string {
    const [verb, ...rest] = command.split(/\s+/);
    const args = new Map<string, string>();
    const positional: string[] = [];
    for (const word of rest) {
      const eq = word.indexOf('=');
      const assignment = verb === 'write' || verb === 'set' || (verb === 'propose' && positional.length > 0) || (verb === 'run-until' && positional.length === 0);
      if (eq > 0 && !assignment) args.set(word.slice(0, eq), word.slice(eq + 1));
      else positional.push(word);
    }
    switch (verb) {
      case 'cluster':
        return this.newCluster(args);
      case 'start':
        for (const id of positional) {
          const node = this.c.node(id);
          if (!node.started) this.c.startNow(id);
          else if (node.status === 'crashed') node.restart();
        }
        return 'ok';
      case 'stop':
        for (const id of positional) this.c.crash(id);
        return 'ok';
      case 'partition': {
        const [a, bar, b] = positional;
        if (bar !== '|' || a === undefined || b === undefined) throw new Error('usage: partition A,B | C,D');
        this.c.partition(symmetricPartition(a.split(','), b.split(',')));
        return 'ok';
      }
      case 'heal':
        this.c.heal();
        return 'ok';
      case 'run':
        this.c.runFor(Number(args.get('units') ?? '100'));
        return 'ok';
      case 'stabilize':
        return this.stabilize();
      case 'status':
        return this.status();
      case 'write':
        return this.write(positional[0] ?? '', positional.find((p) => p.startsWith('via='))?.slice(4) ?? null);
      case 'read':
        return this.read(positional[0] ?? '', args.get('via') ?? null);
      case 'exclude':
        return this.operate({ type: 'votingExclusionsAdded', ids: positional });
      case 'clear-exclusions':
        return this.operate({ type: 'votingExclusionsCleared' });
      case 'remove':
        return this.operate({ type: 'nodeLeft', id: positional[0] ?? '' });
      case 'set': {
        const [name, value] = (positional[0] ?? '').split('=');
        return this.operate({ type: 'settingsUpdated', settings: { [name ?? '']: value === undefined || value === '' ? null : value } });
      }
      case 'joins':
        return this.c.nodes.map((n) => `${n.id}: ${n.coordinator?.lastJoinOutcome() ?? (n.status === 'crashed' ? 'down' : '-')}`).join('\n');
      case 'snapshots':
        return this.c.nodes
          .map((n) => {
            const installed = n.stats.snapshotsInstalled > 0 ? ` (${n.stats.snapshotsInstalled} installed from the master)` : '';
            return `${n.id}: ${n.storage.snapshotIndex === 0 ? '-' : `snapshot at ${n.storage.snapshotIndex}`}${installed}`;
          })
          .join('\n');
      case 'pause':
        for (const id of positional) this.c.pause(id);
        return 'ok';
      case 'resume':
        for (const id of positional) this.c.resume(id);
        return 'ok';
      case 'hold':
        this.c.network.hold(messageFilter(args));
        return 'ok';
      case 'deliver': {
        const delivered = this.c.network.release(messageFilter(args));
        // The Readys they call for (deferred, as the runtime defers them).
        this.c.runFor(0);
        return delivered.length === 0 ? 'nothing held matches' : delivered.map((m) => describeMessage(m)).join('\n');
      }
      case 'deliver-all': {
        this.c.network.endHolds();
        return `${this.c.network.release(() => true).length} delivered`;
      }
      case 'run-until': {
        const [id, role] = (positional[0] ?? '').split('=');
        const node = this.c.node(id ?? '');
        const reached = this.c.runFor(Number(args.get('units') ?? String(20 * this.electionTimeoutUnits())), () => node.core?.softState().role === role);
        return reached ? `${node.id} is ${role}, term ${node.core!.softState().term}` : `${node.id} is not ${role}`;
      }
      case 'leases': {
        const holders = this.c.nodes.filter((n) => n.status === 'running' && n.coordinator!.hasReadLease()).map((n) => `${n.id} (term ${n.core!.softState().term})`);
        return holders.length === 0 ? 'none' : holders.join(', ');
      }
      case 'seqread':
        return this.read(positional[0] ?? '', args.get('via') ?? null, 'sequential');
      case 'values': {
        const node = this.c.node(positional[0] ?? '');
        return `${node.id}: applied ${node.storage.stateMachine.appliedIndex}, ${node.storage.stateMachine.hash() || 'empty'}`;
      }
      case 'manual':
        return this.manual();
      case 'auto':
        return this.auto();
      case 'tick':
        return this.withAnswers(() => {
          const node = this.c.node(positional[0] ?? '');
          for (let i = 0; i < Number(positional[1] ?? '1'); i++) node.tick();
          this.c.runFor(0);
          return 'ok';
        });
      case 'skip-ticks': {
        const node = this.c.node(positional[0] ?? '');
        node.coordinator!.catchUp(Number(positional[1] ?? '1'));
        return 'ok';
      }
      case 'ready':
        return this.withAnswers(() => positional.map((id) => this.processReady(this.c.node(id))).join('\n'));
      case 'settle':
        return this.withAnswers(() => this.settle(list(args.get('cut'))));
      case 'held': {
        const held = this.c.network.held.filter(messageFilter(args));
        return held.length === 0 ? 'nothing held matches' : held.map((m) => describeMessage(m)).join('\n');
      }
      case 'drop': {
        const dropped = this.c.network.drop(messageFilter(args));
        return dropped.length === 0 ? 'nothing held matches' : dropped.map((m) => `dropped ${describeMessage(m)}`).join('\n');
      }
      case 'propose':
        return this.withAnswers(() => this.propose(this.c.node(positional[0] ?? ''), positional.slice(1)));
      case 'progress':
        return this.progress(this.c.node(positional[0] ?? '')).join('\n') || 'not master';
      case 'disk': {
        const node = this.c.node(positional[0] ?? '');
        const state = positional[1];
        if (state !== 'full' && state !== 'nearly-full' && state !== 'ok') throw new Error('usage: disk ID full|nearly-full|ok');
        node.storage.full = state === 'full';
        node.storage.nearlyFull = state === 'nearly-full';
        return 'ok';
      }
      default:
        throw new Error(`unknown command ${verb}`);
    }
  }

  private get c(): SimCluster {
    if (this.cluster === null) throw new Error('no cluster yet: start with "cluster"');
    return this.cluster;
  }

  private newCluster(args: Map<string, string>): string {
    const list = (key: string) => (args.get(key) ?? '').split(',').filter((id) => id !== '');
    const ids = list('nodes');
    const votingOnly = list('voting-only');
    const data = list('data');
    const late = list('late');
    const strangers = list('stranger');
    const bootstrapArg = args.get('bootstrap') ?? `names:${ids.filter((id) => !data.includes(id) && !late.includes(id) && !strangers.includes(id)).join(',')}`;
    const [kind, value] = bootstrapArg.split(':');
    const bootstrap: BootstrapMethod =
      kind === 'expect' ? { kind: 'expect', count: Number(value) } : kind === 'names' ? { kind: 'initialMasterNodes', names: (value ?? '').split(',') } : { kind: 'none' };
    const versions = new Map(list('versions').map((v) => v.split(':') as [string, string]));
    const nodes: SimNodeSpec[] = ids.map((id) => ({
      id,
      roles: { masterEligible: !data.includes(id), votingOnly: votingOnly.includes(id) },
      startAt: late.includes(id) || strangers.includes(id) ? null : 0,
      ...(strangers.includes(id) ? { clusterName: 'another-cluster', bootstrap: { kind: 'none' } as const } : {}),
      ...(versions.has(id) ? { version: versions.get(id)! } : {}),
    }));
    const compact = args.get('compact');
    const spec: ClusterSpec = {
      nodes,
      clusterName: 'transcripts',
      bootstrap,
      tuning: {
        electionTimeoutTicks: 10,
        heartbeatIntervalTicks: 3,
        appendEntriesMax: Number(args.get('append-entries') ?? '16'),
        ...(args.has('append-bytes') ? { appendBytesMax: Number(args.get('append-bytes')) } : {}),
        inflightAppendsMax: Number(args.get('inflight') ?? '4'),
        uncommittedEntriesMax: 64,
        clockDriftPercent: 10,
        readIndexPendingMax: 64,
      },
      coordinatorTuning: {
        probeIntervalTicks: 3,
        discoveryInfoTicksMax: 12,
        discoveredPeersMax: 16,
        joinRetryTicks: 5,
        nodeFailureTimeoutTicks: 20,
        inSyncTimeoutTicks: 20,
        publishTimeoutTicks: 50,
        pendingChangesMax: 8,
      },
      compaction: compact === undefined ? null : { entriesMin: Number(compact), retainEntries: Number(args.get('retain') ?? '0') },
      // Every sync returns inside its Ready: a transcript shows one Ready at a time, whole.
      syncDelayMax: 0,
      tickPeriodMin: 9,
      tickPeriodMax: 11,
      network: { latencyMin: 1, latencyMax: 5, slowProbability: 0, slowFactor: 1, dropRate: 0, duplicateRate: 0 },
      ...(this.injectedBug !== undefined ? { injectedBug: this.injectedBug } : {}),
    };
    this.stepping = false;
    this.answers.length = 0;
    this.cluster = new SimCluster(spec, new SimRandom(Number(args.get('seed') ?? '1')));
    this.cluster.start();
    return 'ok';
  }

  private electionTimeoutUnits(): number {
    return this.c.spec.tuning.electionTimeoutTicks * this.c.spec.tickPeriodMax;
  }

  private stabilize(): string {
    let last = this.status();
    let quiet = 0;
    for (let round = 0; round < stabilizeRoundsMax && quiet < quietRoundsForStable; round++) {
      this.c.runFor(this.electionTimeoutUnits());
      const now = this.status();
      quiet = now === last ? quiet + 1 : 0;
      last = now;
    }
    return quiet >= quietRoundsForStable ? last : `${last}\n(still changing after ${stabilizeRoundsMax} election timeouts)`;
  }

  private status(): string {
    const lines = this.c.nodes.map((n) => {
      if (!n.started) return `${n.id}: not started`;
      if (n.status === 'crashed') return `${n.id}: down`;
      const soft = n.core!.softState();
      const voters = [...soft.configuration.current].sort().join(',');
      const joint = soft.configuration.next !== undefined ? ` → ${[...soft.configuration.next].sort().join(',')}` : '';
      const role = soft.role === 'master' ? 'master' : soft.master !== null ? `follower of ${soft.master}` : soft.role === 'follower' ? 'no master' : soft.role;
      return `${n.id}: ${role}, term ${soft.term}, voters ${voters === '' ? '-' : voters}${joint}`;
    });
    const master = this.c.master();
    if (master === null || !master.canBeMaster) lines.push('cluster: no master');
    else {
      const state = master.coordinator!.clusterState();
      const render = (ids: readonly string[]) => (ids.length === 0 ? '-' : ids.join(','));
      const settings = Object.entries(state.settings).map(([k, v]) => `${k}=${String(v)}`);
      lines.push(
        `cluster: master ${master.id}, members ${render(state.nodes.map((n) => n.id))}, in-sync ${render(state.inSync)}, ` +
          `excluded ${render(state.votingExclusions)}${settings.length > 0 ? `, settings ${settings.join(',')}` : ''}`,
      );
    }
    return lines.join('\n');
  }

  // ---------------------------------------------------------------- message level

  /** Every node in step mode (SimNode.setStepMode) and every message held; what was in flight lands first. */
  private manual(): string {
    if (this.stepping) throw new Error('already manual');
    this.stepping = true;
    this.c.network.hold(() => true);
    for (const node of this.c.nodes) node.setStepMode(true);
    this.c.runFor(this.c.spec.network.latencyMax * this.c.spec.network.slowFactor);
    return 'ok';
  }

  /** Back to time: the holds end, everything held is delivered, every node carries out what waits. */
  private auto(): string {
    if (!this.stepping) throw new Error('not manual');
    this.stepping = false;
    this.c.network.endHolds();
    const delivered = this.c.network.release(() => true).length;
    for (const node of this.c.nodes) node.setStepMode(false);
    this.c.checker.afterEvent(this.c.nodes);
    return `${delivered} delivered`;
  }

  /** One Ready of `node`, through the runtime's loop, as it went: what it stored, applied and sent; the progress. */
  private processReady(node: SimNode): string {
    const step = node.processReady();
    this.c.runFor(0);
    this.c.checker.afterEvent(this.c.nodes);
    if (step === null) return `${node.id}: no Ready`;
    const { ready, completed } = step;
    const lines = [`${node.id} Ready:`];
    const range = (entries: readonly Entry[]) => `${entries[0]!.index}..${entries[entries.length - 1]!.index}`;
    if (ready.snapshot !== undefined) lines.push(`  install snapshot ${ready.snapshot.index}/${ready.snapshot.term}`);
    if (ready.hardState !== undefined) {
      const { term, votedFor, commitIndex } = ready.hardState;
      lines.push(`  hard state term ${term} vote ${votedFor ?? '-'} commit ${commitIndex}`);
    }
    if (ready.entries.length > 0) lines.push(`  store ${range(ready.entries)} (${ready.entries.map(describeEntry).join(', ')})`);
    if (ready.committed.length > 0) lines.push(`  apply ${range(ready.committed)}`);
    for (const m of ready.messages) lines.push(`  send ${describeMessage(m)}`);
    for (const r of ready.readStates) lines.push(`  read ${r.id} confirmed at ${r.index}`);
    if (node.status === 'crashed') lines.push('  crashed');
    else if (!completed) lines.push('  refused by the disk: nothing of it stored or sent; a new coordinator from the disk');
    for (const line of this.progress(node)) lines.push(`  progress ${line}`);
    return lines.join('\n');
  }

  /**
   * Carries out every Ready and delivers every held message — but those to or from the `cut` nodes — until nothing
   * is left (no ticks pass).
   */
  private settle(cut: readonly string[]): string {
    let readys = 0;
    let delivered = 0;
    for (let round = 0; ; round++) {
      if (round >= settleRoundsMax) throw new Error(`not settled after ${settleRoundsMax} rounds`);
      let progress = false;
      for (const node of this.c.nodes) {
        while (node.processReady() !== null) {
          readys++;
          progress = true;
          this.c.runFor(0);
          this.c.checker.afterEvent(this.c.nodes);
        }
      }
      const released = this.c.network.release((m) => !cut.includes(m.from) && !cut.includes(m.to));
      this.c.checker.afterEvent(this.c.nodes);
      delivered += released.length;
      if (!progress && released.length === 0) return `${readys} Readys, ${delivered} messages delivered`;
    }
  }

  /** Client writes queued at `node` (KEY=VALUE, or KEY=A..B for one write of each integer); answers come later. */
  private propose(node: SimNode, assignments: readonly string[]): string {
    for (const assignment of assignments) {
      const [key, value] = assignment.split('=');
      if (key === undefined || value === undefined) throw new Error('usage: propose ID KEY=VALUE|KEY=A..B ..');
      const span = /^(\d+)\.\.(\d+)$/.exec(value);
      const values = span === null ? [value] : Array.from({ length: Number(span[2]) - Number(span[1]) + 1 }, (_, i) => String(Number(span[1]) + i));
      for (const v of values) {
        node.request({ op: 'write', key, value: v }, (reply) => this.answers.push(`answer ${key}=${v}: ${describeReply(reply, node.id, () => 'ok')}${reply.kind === 'applied' ? ` at ${reply.index}` : ''}`));
      }
    }
    this.c.runFor(0);
    return 'ok';
  }

  /** A master's view of each follower (followerProgress.ts); nothing on any other node. */
  private progress(node: SimNode): string[] {
    const core = node.core;
    if (core === null || core.softState().role !== 'master') return [];
    return [...core.followerStates()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, p]) => `${id}: ${p.state}, match ${p.matchIndex}, next ${p.nextIndex}, inflight ${p.inflight}, applied ${p.appliedIndex}, stalled ${core.stalledTicks(id)}`);
  }

  /** `run`'s output, then the client answers that arrived meanwhile. */
  private withAnswers(run: () => string): string {
    const out = run();
    const answers = this.answers.splice(0);
    return [out, ...answers].join('\n');
  }

  /** Waits (bounded) for a master that can take writes; null if none came. */
  private awaitMaster(): SimNode | null {
    let master: SimNode | null = null;
    this.c.runFor(20 * this.electionTimeoutUnits(), () => {
      const m = this.c.master();
      master = m !== null && m.canBeMaster ? m : null;
      return master !== null;
    });
    return master;
  }

  private request(command: Parameters<SimNode['request']>[0], via: string | null): { reply: ClientReply | null; node: string } | string {
    const node = via !== null ? this.c.node(via) : this.awaitMaster();
    if (node === null) return `unavailable: no master within 20 election timeouts`;
    const box: { reply: ClientReply | null } = { reply: null };
    node.request(command, (r) => (box.reply = r));
    this.c.runFor(20 * this.electionTimeoutUnits(), () => box.reply !== null);
    return { reply: box.reply, node: node.id };
  }

  private write(assignment: string, via: string | null): string {
    const [key, value] = assignment.split('=');
    if (key === undefined || value === undefined) throw new Error('usage: write KEY=VALUE [via=ID]');
    const outcome = this.request({ op: 'write', key, value }, via);
    if (typeof outcome === 'string') return outcome;
    return describeReply(outcome.reply, outcome.node, () => 'ok');
  }

  private read(key: string, via: string | null, mode: 'log' | 'sequential' = 'log'): string {
    const lease = mode === 'sequential' && via !== null && this.c.node(via).coordinator?.hasReadLease() === true;
    const outcome = this.request({ op: 'read', key, mode }, via);
    if (typeof outcome === 'string') return outcome;
    const how = mode === 'sequential' ? (lease ? ', from its lease' : ', through the read index') : '';
    return describeReply(outcome.reply, outcome.node, (r) => (r.op === 'read' ? `${key}=${String(r.value)}` : 'ok')) + how;
  }

  private operate(change: ClusterChange): string {
    const master = this.awaitMaster();
    if (master === null) return 'unavailable: no master within 20 election timeouts';
    if (!master.proposeClusterChange(change)) return `refused by ${master.id}`;
    const applied = this.c.runFor(20 * this.electionTimeoutUnits(), () => {
      const state = master.coordinator?.clusterState();
      return state !== undefined && hasEffect(state, change);
    });
    return applied ? `applied (by ${master.id})` : `not applied within 20 election timeouts`;
  }
}

/** A comma-separated list argument. */
function list(value: string | undefined): string[] {
  return (value ?? '').split(',').filter((id) => id !== '');
}

function describeEntry(entry: Entry): string {
  return `${entry.payload.kind}/${entry.term}`;
}

/** The messages a hold or deliver command names: every field given must match. */
function messageFilter(args: ReadonlyMap<string, string>): (m: ClusterMessage) => boolean {
  const from = args.get('from');
  const to = args.get('to');
  const type = args.get('type');
  const granted = args.get('granted');
  return (m) =>
    (from === undefined || m.from === from) &&
    (to === undefined || m.to === to) &&
    (type === undefined || m.type === type) &&
    (granted === undefined || ('granted' in m && String(m.granted) === granted));
}

/** Whether the cluster state shows the change (the master may have made others in between). */
function hasEffect(state: ClusterState, change: ClusterChange): boolean {
  switch (change.type) {
    case 'votingExclusionsAdded':
      return change.ids.every((id) => state.votingExclusions.includes(id));
    case 'votingExclusionsCleared':
      return state.votingExclusions.length === 0;
    case 'nodeLeft':
      return !state.nodes.some((n) => n.id === change.id);
    case 'settingsUpdated':
      return Object.entries(change.settings).every(([name, value]) => (value === null ? !(name in state.settings) : state.settings[name] === value));
    default:
      return true;
  }
}

function describeReply(reply: ClientReply | null, node: string, ok: (result: Extract<ClientReply, { kind: 'applied' }>['result']) => string): string {
  if (reply === null) return `no answer from ${node} within 20 election timeouts`;
  switch (reply.kind) {
    case 'applied':
      return `${ok(reply.result)} (through ${node})`;
    case 'rejected':
      return `refused by ${node}: ${reply.reason}${reply.master !== null ? ` (master ${reply.master})` : ''}`;
    case 'unknown':
      return `unknown outcome: ${reply.why}`;
  }
}
