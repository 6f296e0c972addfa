import { freePort } from './ports.js';
import { processAuth, startNodeProcess, type NodeProcess } from './process.js';
import { tempDir, waitFor } from './tmp.js';

/**
 * Real multi-process clusters on loopback for tests: every node a `conclave start` child process with its own data
 * directory, HTTP and transport ports picked free up front (so that seeds can name them), and the same secret.
 */
export const clusterSecret = 'process-test-cluster-secret';

export interface ClusterNodeHandle {
  readonly name: string;
  readonly dir: string;
  readonly httpPort: number;
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

export class ProcessCluster {
  readonly nodes = new Map<string, ClusterNodeHandle>();
  private readonly tmp = tempDir('conclave-cluster-');

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
            '--cluster-secret', clusterSecret,
            '--host', '127.0.0.1',
            ...node.args,
          ],
          env: node.env,
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
    }
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

  /** The name of the node that is master according to a running node that answers authoritatively. */
  async master(timeoutMs = 15_000): Promise<string> {
    return waitFor(
      'a master',
      async () => {
        for (const [name, node] of this.nodes) {
          if (node.process === null) continue;
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
