import { readFileSync } from 'node:fs';

import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { freePort } from './ports.js';
import { processAuth, startNodeProcess, type NodeProcess } from './process.js';
import { tempDir, waitFor } from './tmp.js';

/**
 * Real multi-process clusters on loopback for tests: every node a `conclave start` child process with its own data
 * directory, HTTP and transport ports picked free up front (so that seeds can name them), and the same secret.
 */
export const clusterSecret = generateClusterSecret();

export interface ClusterNodeHandle {
  readonly name: string;
  readonly dir: string;
  /** May change between starts: a node restarted elsewhere (restored from a copy of its data) listens on another port. */
  httpPort: number;
  readonly transportPort: number;
  readonly args: string[];
  /** Extra environment of the node's process (settings as CONCLAVE_* variables); may change between starts. */
  env: Record<string, string>;
  process: NodeProcess | null;
}

export interface StatusNode {
  id: string;
  name: string;
  status: string;
  role: string;
  voter: boolean;
  inSync: boolean;
  appliedIndex: number | null;
}

export interface ClusterStatusBody {
  clusterUuid: string | null;
  term: number;
  master: { id: string; name: string } | null;
  votingConfiguration: string[];
  nodes: StatusNode[];
  authoritative: boolean;
}

/** GET /api/v1/cluster/digest (src/replication/contentDigest.ts). */
export interface DigestAnswer {
  node: string;
  nodeId: string;
  appliedIndex: number;
  digest: string;
  counts: { nodes: number; users: number; binaryReferences: number; blobs: number };
  blobsMissing: number;
}

/** The scheduler state of a process (Linux /proc/PID/stat): 'T' once SIGSTOP took effect. */
export function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name is in parentheses and may contain spaces: the state follows the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

export class ProcessCluster {
  readonly nodes = new Map<string, ClusterNodeHandle>();
  private readonly tmp = tempDir('conclave-cluster-');
  /** Nodes under SIGSTOP: they accept connections but never answer, so helpers that ask every node skip them. */
  private readonly paused = new Set<string>();

  /**
   * Declares nodes (not started): `args(name)` gives each node's extra flags (bootstrap, roles…), `env(name)` its
   * extra environment variables.
   */
  static async create(
    names: readonly string[],
    args: (name: string, seeds: string[]) => string[],
    env: (name: string) => Record<string, string> = () => ({}),
  ): Promise<ProcessCluster> {
    const cluster = new ProcessCluster();
    const ports = new Map<string, { http: number; transport: number }>();
    for (const name of names) ports.set(name, { http: await freePort(), transport: await freePort() });
    const seeds = names.map((n) => `127.0.0.1:${ports.get(n)!.transport}`);
    for (const name of names) {
      const { http, transport } = ports.get(name)!;
      cluster.nodes.set(name, { name, dir: `${cluster.tmp.dir}/${name}`, httpPort: http, transportPort: transport, args: args(name, seeds), env: env(name), process: null });
    }
    return cluster;
  }

  node(name: string): ClusterNodeHandle {
    const node = this.nodes.get(name);
    if (node === undefined) throw new Error(`no node ${name}`);
    return node;
  }

  url(name: string): string {
    return `http://127.0.0.1:${this.node(name).httpPort}`;
  }

  async start(...names: string[]): Promise<void> {
    await Promise.all(
      names.map(async (name) => {
        const node = this.node(name);
        if (node.process !== null) throw new Error(`${name} is running`);
        node.process = await startNodeProcess(node.dir, {
          args: [
            '--name', name,
            '--http-port', String(node.httpPort),
            '--transport-port', String(node.transportPort),
            '--host', '127.0.0.1',
            ...node.args,
          ],
          // From the environment, as operators are told to: a command line shows in `ps`.
          env: { CONCLAVE_CLUSTER_SECRET: clusterSecret, ...node.env },
        });
      }),
    );
  }

  /** kill -9: no goodbye, no checkpoint. */
  async kill(...names: string[]): Promise<void> {
    for (const name of names) {
      const node = this.node(name);
      if (node.process === null) continue;
      node.process.child.kill('SIGKILL');
      await node.process.exited;
      node.process = null;
      this.paused.delete(name);
    }
  }

  /**
   * SIGSTOP: the process freezes with its sockets open (peers see silence, not a closed connection). Returns once
   * the kernel reports it stopped. Whatever peers send it meanwhile waits in its socket buffers and is read after
   * `resume`.
   */
  async pause(...names: string[]): Promise<void> {
    for (const name of names) {
      const child = this.running(name).child;
      child.kill('SIGSTOP');
      this.paused.add(name);
      await waitFor(`${name} to be stopped`, () => (processState(child.pid!) === 'T' ? true : undefined), 5000);
    }
  }

  /** SIGCONT of a paused node; returns once it runs again. */
  async resume(...names: string[]): Promise<void> {
    for (const name of names) {
      const child = this.running(name).child;
      child.kill('SIGCONT');
      await waitFor(`${name} to run again`, () => (processState(child.pid!) !== 'T' ? true : undefined), 5000);
      this.paused.delete(name);
    }
  }

  private running(name: string): NodeProcess {
    const proc = this.node(name).process;
    if (proc === null) throw new Error(`${name} is not running`);
    return proc;
  }

  async stopAll(): Promise<void> {
    await this.kill(...this.nodes.keys());
    this.tmp.cleanup();
  }

  output(name: string): string {
    return this.node(name).process?.output() ?? '';
  }

  async get(name: string, path: string): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.url(name)}${path}`, { headers: { authorization: processAuth } });
    return { status: res.status, body: await res.json().catch(() => null) };
  }

  async status(name: string): Promise<ClusterStatusBody> {
    const res = await this.get(name, '/api/v1/cluster/status');
    if (res.status !== 200) throw new Error(`status of ${name}: ${res.status}`);
    return res.body as ClusterStatusBody;
  }

  async put(name: string, path: string, properties: Record<string, unknown>): Promise<{ status: number; body: { error?: { code: string } } & Record<string, unknown> }> {
    const res = await fetch(`${this.url(name)}/api/v1/content${path}`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ properties }),
      signal: AbortSignal.timeout(15_000),
    });
    return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
  }

  /** A node's content digest at its applied index. */
  async digest(name: string): Promise<DigestAnswer> {
    const res = await this.get(name, '/api/v1/cluster/digest');
    if (res.status !== 200) throw new Error(`digest of ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as DigestAnswer;
  }

  /**
   * Waits until the named nodes (default: every running one) answer their digests at one applied index with every
   * blob present, and returns the answers (equal or not: comparing them is the caller's assertion). A digest holds
   * a node's event loop while it hashes the whole repository, so digests are asked for only once the master's
   * status shows the nodes at one applied index, not in a tight loop.
   */
  async settledDigests(names?: readonly string[], timeoutMs = 20_000): Promise<DigestAnswer[]> {
    const which = names ?? [...this.nodes.values()].filter((n) => n.process !== null && !this.paused.has(n.name)).map((n) => n.name);
    return waitFor(
      `${which.join(', ')} to answer their digests at one applied index`,
      async () => {
        const status = await this.status(await this.master(timeoutMs));
        const applied = which.map((name) => status.nodes.find((n) => n.name === name)?.appliedIndex ?? null);
        if (applied.includes(null) || new Set(applied).size !== 1) return undefined;
        const answers = await Promise.all(which.map((name) => this.digest(name)));
        return new Set(answers.map((a) => a.appliedIndex)).size === 1 && answers.every((a) => a.blobsMissing === 0) ? answers : undefined;
      },
      timeoutMs,
    );
  }

  /**
   * Waits until the master lists every running node as a member that is up, in sync, and has applied as far as the
   * master itself; returns the master's name and its status.
   */
  async caughtUp(timeoutMs = 30_000): Promise<{ master: string; status: ClusterStatusBody }> {
    const running = [...this.nodes.values()].filter((n) => n.process !== null && !this.paused.has(n.name)).map((n) => n.name);
    return waitFor(
      `${running.join(', ')} to be in sync with the master and caught up`,
      async () => {
        const master = await this.master(timeoutMs);
        const status = await this.status(master);
        const own = status.nodes.find((n) => n.name === master);
        if (own === undefined || own.appliedIndex === null) return undefined;
        const ok = running.every((name) => {
          const node = status.nodes.find((n) => n.name === name);
          return node !== undefined && node.status === 'up' && node.inSync && node.appliedIndex === own.appliedIndex;
        });
        return ok ? { master, status } : undefined;
      },
      timeoutMs,
    );
  }

  /** The name of the node that is master according to a running node that answers authoritatively. */
  async master(timeoutMs = 15_000): Promise<string> {
    return waitFor(
      'a master',
      async () => {
        for (const [name, node] of this.nodes) {
          if (node.process === null || this.paused.has(name)) continue;
          const health = await fetch(`${this.url(name)}/health/master`).catch(() => null);
          if (health?.status === 200) return name;
        }
        return undefined;
      },
      timeoutMs,
    );
  }

  /** Writes through whichever node is master (retrying through elections) and returns the master's name. */
  async write(path: string, properties: Record<string, unknown>, timeoutMs = 15_000): Promise<string> {
    return waitFor(
      `the write of ${path}`,
      async () => {
        const master = await this.master(timeoutMs);
        const res = await this.put(master, path, properties);
        if (res.status === 200 || res.status === 201) return master;
        return undefined;
      },
      timeoutMs,
    );
  }

  /** Waits until every running node has applied everything the master committed and reads `path` the same. */
  async converged(path: string, timeoutMs = 15_000): Promise<void> {
    await waitFor(
      `every running node to hold ${path}`,
      async () => {
        const bodies: string[] = [];
        for (const [name, node] of this.nodes) {
          if (node.process === null) continue;
          const res = await this.get(name, `/api/v1/content${path}`);
          if (res.status !== 200) return undefined;
          bodies.push(JSON.stringify(res.body));
        }
        return new Set(bodies).size === 1 ? true : undefined;
      },
      timeoutMs,
    );
  }
}
