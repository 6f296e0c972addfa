import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { freePort } from './ports.js';
import { tempDir, WaitAborted, waitFor } from './tmp.js';

/** Debian's package `prometheus` (.ci/run installs it). */
export const prometheusBinary = '/usr/bin/prometheus';

export interface PrometheusTargets {
  /** host:port of each node's HTTP API. */
  readonly targets: readonly string[];
  /** A user of the nodes that Prometheus scrapes as, with HTTP Basic credentials. */
  readonly username: string;
  readonly password: string;
  readonly scrapeIntervalSeconds: number;
}

/** One sample of an instant vector from Prometheus's HTTP API. */
export interface VectorSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

/**
 * A real Prometheus server for tests: its configuration, the scrape password (in a file of mode 0600, never in argv
 * or the configuration) and its storage in a temp dir; the web API on a free loopback port; its own process group,
 * killed as a whole by stop(), which also removes the temp dir.
 */
export class PrometheusServer {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    private readonly exited: Promise<unknown>,
    private readonly output: () => string,
    private readonly tmp: { dir: string; cleanup: () => void },
  ) {}

  static async start(options: PrometheusTargets): Promise<PrometheusServer> {
    if (!existsSync(prometheusBinary)) throw new Error(`${prometheusBinary} is missing: apt-get install prometheus (.ci/run does)`);
    const tmp = tempDir('conclave-prometheus-');
    const passwordFile = join(tmp.dir, 'scrape-password');
    writeFileSync(passwordFile, options.password, { mode: 0o600 });
    const interval = `${options.scrapeIntervalSeconds}s`;
    const config = [
      'global:',
      `  scrape_interval: ${interval}`,
      `  scrape_timeout: ${interval}`,
      `  evaluation_interval: ${interval}`,
      'scrape_configs:',
      '  - job_name: conclave',
      '    basic_auth:',
      `      username: ${JSON.stringify(options.username)}`,
      `      password_file: ${JSON.stringify(passwordFile)}`,
      '    static_configs:',
      `      - targets: ${JSON.stringify(options.targets)}`,
      '',
    ].join('\n');
    const configFile = join(tmp.dir, 'prometheus.yml');
    writeFileSync(configFile, config, { mode: 0o600 });
    const port = await freePort();
    const child = spawn(
      prometheusBinary,
      [`--config.file=${configFile}`, `--storage.tsdb.path=${join(tmp.dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      // Its own process group: stop() kills it and anything it started in one signal.
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '' } },
    );
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let gone: number | string | undefined;
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve((gone = code ?? signal ?? -1))));
    const server = new PrometheusServer(child, `http://127.0.0.1:${port}`, exited, () => output, tmp);
    try {
      await waitFor(
        'Prometheus to be ready',
        async () => {
          if (gone !== undefined) throw new WaitAborted(`prometheus exited (${gone}):\n${output}`);
          const res = await fetch(`${server.url}/-/ready`);
          return res.status === 200 ? true : undefined;
        },
        20_000,
      );
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** An instant query (GET /api/v1/query); throws on anything but a vector. */
  async query(promql: string): Promise<VectorSample[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (body.status !== 'success' || body.data === undefined) throw new Error(`query ${promql}: ${body.error ?? res.status}`);
    if (body.data.resultType !== 'vector') throw new Error(`query ${promql}: a ${body.data.resultType}, not a vector`);
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /** Waits (bounded) until the query's answer passes `check`, and returns that answer. */
  async until(promql: string, check: (samples: VectorSample[]) => boolean, timeoutMs = 20_000): Promise<VectorSample[]> {
    let last: VectorSample[] = [];
    try {
      return await waitFor(`Prometheus to answer ${promql} as expected`, async () => {
        last = await this.query(promql);
        return check(last) ? last : undefined;
      }, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}; last answer: ${JSON.stringify(last)}\n--- prometheus output ---\n${this.output()}`);
    }
  }

  /** Kills the process group and removes the temp dir. */
  async stop(): Promise<void> {
    try {
      if (this.child.exitCode === null && this.child.signalCode === null) process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.exited;
    this.tmp.cleanup();
  }
}
