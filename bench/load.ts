import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

import { LatencyHistogram } from './histogram.js';

/**
 * Closed-loop HTTP load: a number of clients, each sending its next request as soon as the previous one was
 * answered, spread over one keep-alive pool per node. It measures; it never judges.
 */

export interface LoadTiming {
  /** Measured time of one scenario. */
  readonly durationMs: number;
  /** Unmeasured time before it, so connections, caches and the JIT are warm. */
  readonly warmupMs: number;
}

/** What one scenario measured. */
export interface LoadResult {
  readonly clients: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Non-2xx answers and failed requests started inside the measured window. */
  readonly errors: number;
  /** The same, during the warm-up; reported so an error there is not hidden. */
  readonly warmupErrors: number;
  /** Successful operations started inside the measured window. */
  readonly ops: number;
  /** ops, and errors with warm-up errors, by origin (in the order given): shows a node that answers nothing or only errors. */
  readonly opsByOrigin: readonly number[];
  readonly errorsByOrigin: readonly number[];
  /**
   * CPU the bench process (the load generator and its client library) used over the scenario, in cores: on a
   * machine the servers share with it, this is taken from them.
   */
  readonly clientCpuCores: number;
}

/**
 * One request on the given client (an undici pool by default): resolves with a status, 2xx for success (an HTTP
 * status, or 200 for a client that does not speak HTTP, such as etcd's gRPC), after the answer was read completely.
 */
export type Operation<C = Pool> = (client: C) => Promise<number>;

/** The client of one origin, for `clients` closed-loop clients; closed when the scenario ends. */
export interface Channel<C> {
  readonly client: C;
  close(): Promise<void>;
}
export type Connect<C> = (origin: string, clients: number) => Channel<C>;

/** One keep-alive undici pool per origin, with a connection per client so no request waits in the client's queue. */
export const undiciPools: Connect<Pool> = (origin, clients) => {
  const pool = new Pool(origin, { connections: Math.max(1, clients), pipelining: 1, keepAliveTimeout: 60_000 });
  return { client: pool, close: () => pool.close() };
};

const errorSamplesMax = 5;

/**
 * Runs `clients` sequential request loops, client i on origin i mod origins.length, each origin with one keep-alive
 * pool holding one connection per client assigned to it (so no request waits in the client's queue). Every client
 * starts together; requests started during the warm-up are not measured, and no request starts after the window.
 * Throughput divides the requests started in the window by the window's length: the requests still running at its
 * end are counted and those still running from the warm-up at its start are not, which balances out.
 */
export async function runLoad(label: string, origins: readonly string[], clients: number, timing: LoadTiming, operation: Operation): Promise<LoadResult>;
export async function runLoad<C>(label: string, origins: readonly string[], clients: number, timing: LoadTiming, operation: Operation<C>, connect: Connect<C>): Promise<LoadResult>;
export async function runLoad<C>(
  label: string,
  origins: readonly string[],
  clients: number,
  timing: LoadTiming,
  operation: Operation<C>,
  connect: Connect<C> = undiciPools as unknown as Connect<C>,
): Promise<LoadResult> {
  if (origins.length === 0) throw new Error('runLoad needs at least one origin');
  const channels = origins.map((origin, i) => connect(origin, Math.ceil((clients - i) / origins.length)));
  const pools = channels.map((channel) => channel.client);
  const cpuAtStart = process.cpuUsage();
  const wallAtStartMs = performance.now();
  const histogram = new LatencyHistogram();
  let errors = 0;
  let warmupErrors = 0;
  const errorSamples: string[] = [];
  const opsByOrigin = origins.map(() => 0);
  const errorsByOrigin = origins.map(() => 0);
  const measureStartMs = performance.now() + timing.warmupMs;
  const measureEndMs = measureStartMs + timing.durationMs;

  const client = async (_: unknown, index: number) => {
    const origin = index % pools.length;
    const pool = pools[origin]!;
    while (true) {
      const startMs = performance.now();
      if (startMs >= measureEndMs) return;
      let failure: string | undefined;
      try {
        const status = await operation(pool);
        if (status < 200 || status > 299) failure = `HTTP ${status}`;
      } catch (err) {
        failure = (err as Error).message;
      }
      const measured = startMs >= measureStartMs;
      if (failure === undefined) {
        if (!measured) continue;
        histogram.record(performance.now() - startMs);
        opsByOrigin[origin]!++;
        continue;
      }
      errorsByOrigin[origin]!++;
      if (measured) errors++;
      else warmupErrors++;
      if (errorSamples.length < errorSamplesMax) errorSamples.push(`${origins[origin]}: ${failure}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: clients }, client));
  } finally {
    await Promise.all(channels.map((channel) => channel.close()));
  }
  const cpu = process.cpuUsage(cpuAtStart);
  const clientCpuCores = (cpu.user + cpu.system) / 1000 / (performance.now() - wallAtStartMs);

  if (errorSamples.length > 0) {
    process.stderr.write(`${label} x${clients}: ${errors + warmupErrors} error(s), for example: ${errorSamples.join('; ')}\n`);
  }
  const summary = histogram.summary();
  return {
    clients,
    opsPerSec: summary.count / (timing.durationMs / 1000),
    p50Ms: summary.p50Ms,
    p99Ms: summary.p99Ms,
    maxMs: summary.maxMs,
    errors,
    warmupErrors,
    ops: summary.count,
    opsByOrigin,
    errorsByOrigin,
    clientCpuCores,
  };
}
