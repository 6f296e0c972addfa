import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Agent, request } from 'undici';

import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { fillFileSystem } from '../helpers/fillDisk.js';
import { binPath, processAuth } from '../helpers/process.js';
import { WaitAborted, waitFor } from '../helpers/tmp.js';
import { processState, type ClusterStatusBody, type DigestAnswer } from '../helpers/cluster.js';
import { NamespaceNetwork, processAlive } from './namespaceNetwork.js';

/**
 * Real `conclave start` processes for the chaos harness, each in a network namespace of its own (namespaceNetwork.ts)
 * and with its data directory on a tmpfs of its own, so that a disk can be filled for real without touching the
 * machine's. Every node listens on the same ports inside its own namespace; the harness reaches it at its address.
 *
 * tmpfs makes fsync free, so a kill -9 here proves the process-crash contract (what was acknowledged is in the
 * journal), not power-loss durability, which test/process/killDurability.test.ts covers on the real disk.
 */
export const chaosSecret = generateClusterSecret();
export const httpPort = 8080;
const transportPort = 9300;

export interface ChaosNodeOptions {
  /** tmpfs size of each node's data directory. */
  readonly diskMib: number;
  /** Extra CONCLAVE_* environment of every node. */
  readonly env: Record<string, string>;
}

export interface ChaosNode {
  readonly name: string;
  readonly ip: string;
  readonly url: string;
  readonly dataDir: string;
  child: ChildProcess | null;
  exited: Promise<number | string> | null;
  /** Everything every incarnation wrote, in order (JSON log lines). */
  output: string;
  incarnations: number;
  paused: boolean;
  /** Set while the harness itself stops or kills the node: any other exit is a crash the harness reports. */
  stopping: boolean;
}

/** A node that exited without the harness asking: an assertion, an unhandled error, or a refusal to start. */
export interface UnexpectedExit {
  readonly node: string;
  readonly code: number | string;
  readonly outputTail: string;
}

/** A master seen in a term, from a node's log or status. */
export interface MasterSighting {
  readonly term: number;
  readonly master: string;
  readonly seenBy: string;
  readonly source: 'log' | 'status';
}

export class ChaosCluster {
  readonly nodes = new Map<string, ChaosNode>();
  readonly agent = new Agent({ connections: 64, keepAliveTimeout: 4_000, connectTimeout: 1_000 });
  readonly unexpectedExits: UnexpectedExit[] = [];
  private readonly mounts: string[] = [];

  private constructor(
    readonly network: NamespaceNetwork,
    private readonly root: string,
    private readonly options: ChaosNodeOptions,
  ) {}

  static create(names: readonly string[], root: string, options: ChaosNodeOptions): ChaosCluster {
    removeOrphanMounts();
    const network = NamespaceNetwork.create();
    const cluster = new ChaosCluster(network, root, options);
    // A harness that ends without destroy() (an uncaught error, process.exit) takes its nodes with it; one killed
    // outright leaves them to the next run's orphan sweep (namespaceNetwork.ts).
    process.once('exit', () => {
      for (const node of cluster.nodes.values()) node.child?.kill('SIGKILL');
    });
    try {
      for (const name of names) {
        const host = network.addHost(name);
        const dataDir = join(root, name);
        mkdirSync(dataDir, { recursive: true });
        execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${options.diskMib}m,mode=0700`, 'tmpfs', dataDir]);
        cluster.mounts.push(dataDir);
        cluster.nodes.set(name, { name, ip: host.ip, url: `http://${host.ip}:${httpPort}`, dataDir, child: null, exited: null, output: '', incarnations: 0, paused: false, stopping: false });
      }
    } catch (err) {
      cluster.destroySync();
      throw err;
    }
    return cluster;
  }

  node(name: string): ChaosNode {
    const node = this.nodes.get(name);
    if (node === undefined) throw new Error(`no node ${name}`);
    return node;
  }

  running(): ChaosNode[] {
    return [...this.nodes.values()].filter((n) => n.child !== null);
  }

  /** Starts the node and waits (bounded) until it listens. */
  async start(name: string): Promise<void> {
    const node = this.node(name);
    if (node.child !== null) throw new Error(`${name} is running`);
    const names = [...this.nodes.keys()];
    const seeds = [...this.nodes.values()].flatMap((n) => ['--seed', `${n.ip}:${transportPort}`]);
    const args = [
      ...this.network.execPrefix(name),
      process.execPath, binPath, 'start',
      '--data', node.dataDir,
      '--name', name,
      '--host', node.ip,
      '--http-port', String(httpPort),
      '--transport-port', String(transportPort),
      '--initial-master-nodes', names.join(','),
      ...seeds,
    ];
    const child = spawn(args[0]!, args.slice(1), {
      env: { PATH: process.env['PATH'] ?? '', CONCLAVE_ADMIN_PASSWORD: 'process-test-password', CONCLAVE_CLUSTER_SECRET: chaosSecret, CONCLAVE_LOG_FORMAT: 'json', ...this.options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    node.incarnations++;
    node.output += `{"chaos":"start","incarnation":${node.incarnations}}\n`;
    child.stdout!.on('data', (chunk: Buffer) => (node.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (node.output += chunk.toString()));
    node.child = child;
    node.paused = false;
    node.stopping = false;
    const from = node.output.length;
    let exitCode: number | string | undefined;
    node.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        exitCode = code ?? signal ?? -1;
        if (!node.stopping) {
          this.unexpectedExits.push({ node: name, code: exitCode, outputTail: node.output.slice(-4_000) });
          if (node.child === child) node.child = null;
        }
        resolve(exitCode);
      }),
    );
    await waitFor(
      `${name} to listen`,
      () => {
        if (exitCode !== undefined) throw new WaitAborted(`${name} exited (${exitCode}) before listening:\n${node.output.slice(from)}`);
        return node.output.slice(from).includes('"msg":"listening"') ? true : undefined;
      },
      30_000,
    );
  }

  /** kill -9. */
  async kill(name: string): Promise<void> {
    const node = this.node(name);
    if (node.child === null) return;
    node.stopping = true;
    node.child.kill('SIGKILL');
    await node.exited;
    node.child = null;
    node.paused = false;
  }

  /** SIGTERM and wait for a clean exit (bounded; then kill -9). Returns the exit code. */
  async stop(name: string, timeoutMs = 30_000): Promise<number | string> {
    const node = this.node(name);
    if (node.child === null) return 'not running';
    if (node.paused) await this.resume(name);
    node.stopping = true;
    node.child.kill('SIGTERM');
    const timer = setTimeout(() => node.child?.kill('SIGKILL'), timeoutMs);
    const code = await node.exited!;
    clearTimeout(timer);
    node.child = null;
    return code;
  }

  async pause(name: string): Promise<void> {
    const node = this.node(name);
    if (node.child === null || node.paused) return;
    node.child.kill('SIGSTOP');
    node.paused = true;
    await waitFor(`${name} to be stopped`, () => (processState(node.child!.pid!) === 'T' ? true : undefined), 5_000);
  }

  async resume(name: string): Promise<void> {
    const node = this.node(name);
    if (node.child === null || !node.paused) return;
    node.child.kill('SIGCONT');
    await waitFor(`${name} to run again`, () => (processState(node.child!.pid!) !== 'T' ? true : undefined), 5_000);
    node.paused = false;
  }

  /** Fills the node's tmpfs to the last byte with a filler file; `freeDisk` removes it. */
  fillDisk(name: string): void {
    fillFileSystem(join(this.node(name).dataDir, 'chaos-filler'));
  }

  freeDisk(name: string): void {
    rmSync(join(this.node(name).dataDir, 'chaos-filler'), { force: true });
  }


  async getJson<T>(name: string, path: string, timeoutMs = 3_000): Promise<{ status: number; body: T }> {
    const res = await request(`${this.node(name).url}${path}`, {
      dispatcher: this.agent,
      headers: { authorization: processAuth },
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.statusCode, body: (await res.body.json()) as T };
  }

  async status(name: string): Promise<ClusterStatusBody> {
    const res = await this.getJson<ClusterStatusBody>(name, '/api/v1/cluster/status');
    if (res.status !== 200) throw new Error(`status of ${name}: ${res.status}`);
    return res.body;
  }

  async digest(name: string): Promise<DigestAnswer> {
    const res = await this.getJson<DigestAnswer>(name, '/api/v1/cluster/digest', 30_000);
    if (res.status !== 200) throw new Error(`digest of ${name}: ${res.status}`);
    return res.body;
  }

  /** The master as the running, unpaused nodes see it: the name only when one node is master by its own word. */
  async master(): Promise<string | undefined> {
    for (const node of this.running()) {
      if (node.paused) continue;
      const res = await request(`${node.url}/health/master`, { dispatcher: this.agent, signal: AbortSignal.timeout(1_000) }).catch(() => null);
      if (res === null) continue;
      await res.body.dump();
      if (res.statusCode === 200) return node.name;
    }
    return undefined;
  }

  /**
   * Every "elected master" line of every node's log: (term, master). Two different masters in one term is the
   * split brain the harness must never see.
   */
  mastersFromLogs(): MasterSighting[] {
    const sightings: MasterSighting[] = [];
    for (const node of this.nodes.values()) {
      for (const line of node.output.split('\n')) {
        if (!line.includes('"msg":"elected master"')) continue;
        try {
          const entry = JSON.parse(line) as { term?: number; node?: string };
          if (typeof entry.term === 'number') sightings.push({ term: entry.term, master: entry.node ?? node.name, seenBy: node.name, source: 'log' });
        } catch {
          // A line cut by kill -9 mid-write.
        }
      }
    }
    return sightings;
  }

  /** Kills every node, removes the tmpfs mounts and the network. */
  async destroy(): Promise<void> {
    for (const node of this.nodes.values()) {
      if (node.child !== null && node.paused) node.child.kill('SIGCONT');
      await this.kill(node.name);
    }
    await this.agent.close().catch(() => undefined);
    this.destroySync();
  }

  private destroySync(): void {
    for (const node of this.nodes.values()) {
      node.stopping = true;
      node.child?.kill('SIGKILL');
    }
    for (const dir of this.mounts.splice(0)) {
      try {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      } catch {
        // Not mounted.
      }
    }
    rmSync(this.root, { recursive: true, force: true });
    this.network.destroy();
  }
}

/**
 * The tmpfs data directories of chaos runs whose process is gone (killed before it could clean up): their paths
 * carry the run's pid (`conclave-chaos-<pid>-…`).
 */
function removeOrphanMounts(): void {
  const pattern = /\/conclave-chaos-(\d+)-\d+\/[^/]+$/;
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mountPoint, type] = line.split(' ');
    if (type !== 'tmpfs' || mountPoint === undefined) continue;
    const match = pattern.exec(mountPoint);
    if (match === null || processAlive(Number(match[1]))) continue;
    try {
      execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
      rmSync(dirname(mountPoint), { recursive: true, force: true });
    } catch {
      // Gone meanwhile.
    }
  }
}
