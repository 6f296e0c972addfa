import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { generateClusterSecret } from '../src/config/clusterSecret.js';
import type { ClusterStatus } from '../src/node/clusterStatus.js';
import { freePort } from '../test/helpers/ports.js';
import { answers200, sleep, startBenchNode, type BenchNode, type StopOutcome } from './nodeProcess.js';
import { adminPassword, authorization } from './operations.js';

/**
 * A cluster of real `conclave start` processes on loopback for the bench: n1..nN, each with its own data directory
 * and ports picked up front (the seeds name each other's transport ports), formed on first start by naming every
 * node as an initial master node. A cluster of one has no seeds: the same as a plain `conclave start`.
 *
 * Nodes log at warn; whatever they log is kept (across restarts) so the bench can show it. Stops are graceful
 * (SIGTERM), so a node started with --cpu-prof writes its profile.
 */

const clusterSecret = generateClusterSecret();
const masterTimeoutMs = 30_000;

interface Member {
  readonly name: string;
  readonly dataDir: string;
  readonly httpPort: number;
  readonly transportPort: number;
  process: BenchNode | null;
  /** Output of earlier runs of this node (before a restart). */
  earlierOutput: string;
  readonly stops: StopOutcome[];
}

export interface BenchClusterOptions {
  readonly size: number;
  /** Directory the data directories go under (one per node). */
  readonly root: string;
  /** Environment of every node (settings as CONCLAVE_* variables). */
  readonly env?: Readonly<Record<string, string>>;
  /** When set, every node runs with --cpu-prof and writes its profile under DIR/<node name>/ when it stops. */
  readonly cpuProfDir?: string | null;
}

export class BenchCluster {
  private readonly members = new Map<string, Member>();

  private constructor(
    private readonly seeds: readonly string[],
    private readonly options: BenchClusterOptions,
  ) {}

  /** Starts every node at once and resolves when each answers /health/ready (a master, in sync). */
  static async start(options: BenchClusterOptions): Promise<BenchCluster> {
    const names = Array.from({ length: options.size }, (_, i) => `n${i + 1}`);
    const ports: Array<{ http: number; transport: number }> = [];
    for (let i = 0; i < names.length; i++) ports.push({ http: await freePort(), transport: await freePort() });
    const seeds = options.size === 1 ? [] : ports.map((p) => `127.0.0.1:${p.transport}`);
    const cluster = new BenchCluster(seeds, options);
    names.forEach((name, i) =>
      cluster.members.set(name, {
        name,
        dataDir: join(options.root, name),
        httpPort: ports[i]!.http,
        transportPort: ports[i]!.transport,
        process: null,
        earlierOutput: '',
        stops: [],
      }),
    );
    try {
      await Promise.all(names.map((name) => cluster.startNode(name, 'ready')));
    } catch (err) {
      await cluster.stopAll();
      throw err;
    }
    return cluster;
  }

  get names(): string[] {
    return [...this.members.keys()];
  }

  url(name: string): string {
    return `http://127.0.0.1:${this.member(name).httpPort}`;
  }

  /** The process id of a running node (for a profiler or strace to attach to). */
  pid(name: string): number {
    const node = this.member(name).process;
    if (node === null) throw new Error(`${name} is not running`);
    return node.pid;
  }

  dataDir(name: string): string {
    return this.member(name).dataDir;
  }

  /** The node that answers /health/master (the master that takes writes). */
  async master(): Promise<string> {
    const deadline = Date.now() + masterTimeoutMs;
    while (Date.now() < deadline) {
      for (const [name, member] of this.members) {
        if (member.process !== null && (await answers200(`${this.url(name)}/health/master`))) return name;
      }
      await sleep(20);
    }
    throw new Error(`no node answered /health/master within ${masterTimeoutMs} ms`);
  }

  /** GET /api/v1/cluster/status as `name` answers it (authoritative on the master). */
  async status(name: string): Promise<ClusterStatus> {
    const response = await fetch(`${this.url(name)}/api/v1/cluster/status`, { headers: { authorization }, signal: AbortSignal.timeout(5_000) });
    const body = await response.text();
    if (response.status !== 200) throw new Error(`cluster status of ${name} answered ${response.status}: ${body}`);
    return JSON.parse(body) as ClusterStatus;
  }

  /** Graceful stop (SIGTERM) of one node. */
  async stop(name: string): Promise<StopOutcome> {
    const member = this.member(name);
    if (member.process === null) throw new Error(`${name} is not running`);
    const outcome = await member.process.stop();
    member.stops.push(outcome);
    member.earlierOutput += member.process.output();
    member.process = null;
    return outcome;
  }

  /** Starts a stopped node again and resolves once its HTTP server answers (it may still be catching up). */
  async restart(name: string, env?: Readonly<Record<string, string>>): Promise<void> {
    await this.startNode(name, 'live', env);
  }

  /** Stops every running node (gracefully); resolves with how each run of each node ended. */
  async stopAll(): Promise<Record<string, StopOutcome[]>> {
    await Promise.allSettled([...this.members.values()].filter((m) => m.process !== null).map((m) => this.stop(m.name)));
    return Object.fromEntries([...this.members.values()].map((m) => [m.name, m.stops]));
  }

  /**
   * What every node logged at level warn and above (a node restarted at a lower level logs more; those lines are
   * left out), each line prefixed with its name.
   */
  output(): string {
    const lines: string[] = [];
    for (const member of this.members.values()) {
      const text = member.earlierOutput + (member.process?.output() ?? '');
      for (const line of text.split('\n')) if (line.trim() !== '' && !isBelowWarn(line)) lines.push(`${member.name}: ${line}`);
    }
    return lines.join('\n');
  }

  /** What one node logged in its current run. */
  currentOutput(name: string): string {
    return this.member(name).process?.output() ?? '';
  }

  private member(name: string): Member {
    const member = this.members.get(name);
    if (member === undefined) throw new Error(`no node ${name}`);
    return member;
  }

  private async startNode(name: string, until: 'ready' | 'live', env?: Readonly<Record<string, string>>): Promise<void> {
    const member = this.member(name);
    if (member.process !== null) throw new Error(`${name} is running`);
    const names = [...this.members.keys()];
    // One directory per node: node names a profile after the time and pid only.
    const cpuProfDir = this.options.cpuProfDir === undefined || this.options.cpuProfDir === null ? null : join(this.options.cpuProfDir, name);
    if (cpuProfDir !== null) mkdirSync(cpuProfDir, { recursive: true });
    member.process = await startBenchNode(member.dataDir, adminPassword, {
      httpPort: member.httpPort,
      args: [
        '--name', name,
        '--transport-port', String(member.transportPort),
        ...this.seeds.flatMap((seed) => ['--seed', seed]),
        ...(this.seeds.length > 0 ? ['--initial-master-nodes', names.join(',')] : []),
      ],
      // From the environment, as operators are told to: a command line shows in `ps`.
      env: { CONCLAVE_CLUSTER_SECRET: clusterSecret, ...this.options.env, ...env },
      execArgv: cpuProfDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProfDir],
      until,
    });
  }
}

/** A JSON log line of pino level below warn (40). Anything else (a stack trace, a crash message) is shown. */
function isBelowWarn(line: string): boolean {
  try {
    const level = (JSON.parse(line) as { level?: unknown }).level;
    return typeof level === 'number' && level < 40;
  } catch {
    return false;
  }
}
