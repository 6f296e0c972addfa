import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

import { benchEnvironment } from './environment.js';
import { measureFsync, measureSqliteInserts, type FsyncFloor, type SqliteFloor } from './floor.js';
import { LatencyHistogram } from './histogram.js';
import { startBenchNode, type BenchNode, type StopOutcome } from './nodeProcess.js';

/**
 * Single-node bench: durable writes and reads over HTTP against one real `conclave start` process, plus the disk's
 * physical floor for context. It measures and reports; it never asserts a speed.
 *
 *   npm run bench -- [--duration-ms N] [--warmup-ms N] [--quick] [--out FILE]
 */

const usage = `usage: node dist/bench/run.js [--duration-ms N] [--warmup-ms N] [--quick] [--out FILE]
  --duration-ms N  measured time per scenario (default 5000; 1000 with --quick)
  --warmup-ms N    unmeasured time before each scenario (default 1000; 250 with --quick)
  --quick          short scenarios and fewer client levels, for a smoke run
  --out FILE       JSON results (default bench-results/single-node.json)`;

const adminPassword = 'bench-admin-password';
const authorization = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;
const parentPath = '/bench';
/** Length of the string property, so a document's properties serialize to about 1 KB. */
const documentTextChars = 1000;
const errorSamplesMax = 5;

interface Options {
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly clientLevels: readonly number[];
  readonly outFile: string;
}

interface ScenarioResult {
  readonly name: string;
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
}

interface Floor {
  readonly fsync: FsyncFloor;
  readonly sqlite: SqliteFloor;
}

/** One request: resolves with the HTTP status after the body has been read completely. */
type Operation = (pool: Pool) => Promise<number>;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'duration-ms': { type: 'string' },
      'warmup-ms': { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const quick = values.quick === true;
  return {
    durationMs: positiveInt(values['duration-ms'], '--duration-ms') ?? (quick ? 1_000 : 5_000),
    warmupMs: nonNegativeInt(values['warmup-ms'], '--warmup-ms') ?? (quick ? 250 : 1_000),
    clientLevels: quick ? [1, 64] : [1, 16, 64],
    outFile: resolve(values.out ?? 'bench-results/single-node.json'),
  };
}

function positiveInt(text: string | undefined, flag: string): number | undefined {
  const value = nonNegativeInt(text, flag);
  if (value === 0) throw new UsageError(`${flag} must be at least 1`);
  return value;
}

function nonNegativeInt(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} takes a whole number of milliseconds, not "${text}"`);
  return Number(text);
}

class UsageError extends Error {}

/**
 * Runs `clients` sequential request loops on one keep-alive pool with one connection per client. Every client
 * starts together; requests started during the warm-up are not measured, and no request starts after the window.
 * Throughput divides the requests started in the window by the window's length: the requests still running at its
 * end are counted and those still running from the warm-up at its start are not, which balances out.
 */
async function runScenario(name: string, origin: string, clients: number, options: Options, operation: Operation): Promise<ScenarioResult> {
  const pool = new Pool(origin, { connections: clients, pipelining: 1, keepAliveTimeout: 60_000 });
  const histogram = new LatencyHistogram();
  let errors = 0;
  let warmupErrors = 0;
  const errorSamples: string[] = [];
  const measureStartMs = performance.now() + options.warmupMs;
  const measureEndMs = measureStartMs + options.durationMs;

  const client = async () => {
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
        if (measured) histogram.record(performance.now() - startMs);
        continue;
      }
      if (measured) errors++;
      else warmupErrors++;
      if (errorSamples.length < errorSamplesMax) errorSamples.push(failure);
    }
  };
  try {
    await Promise.all(Array.from({ length: clients }, client));
  } finally {
    await pool.close();
  }

  if (errorSamples.length > 0) {
    process.stderr.write(`${name} x${clients}: ${errors + warmupErrors} error(s), for example: ${errorSamples.join('; ')}\n`);
  }
  const summary = histogram.summary();
  return {
    name,
    clients,
    opsPerSec: summary.count / (options.durationMs / 1000),
    p50Ms: summary.p50Ms,
    p99Ms: summary.p99Ms,
    maxMs: summary.maxMs,
    errors,
    warmupErrors,
    ops: summary.count,
  };
}

/** Creates documents at fresh paths under one parent; records each path that was stored so reads can find it. */
function writer(written: string[]): Operation {
  const text = documentText(documentTextChars);
  let next = 0;
  return async (pool) => {
    const sequence = next++;
    const path = `${parentPath}/d${String(sequence).padStart(9, '0')}`;
    const body = JSON.stringify({ properties: { title: `Document ${sequence}`, text } });
    const response = await pool.request({
      path: `/api/v1/content${path}`,
      method: 'PUT',
      headers: { authorization, 'content-type': 'application/json' },
      body,
    });
    await response.body.dump();
    if (response.statusCode >= 200 && response.statusCode <= 299) written.push(path);
    return response.statusCode;
  };
}

/** Reads a random document among those written, consuming the whole body as a real client would. */
function reader(written: readonly string[]): Operation {
  if (written.length === 0) throw new Error('no document was written, so there is nothing to read');
  return async (pool) => {
    const path = written[Math.floor(Math.random() * written.length)]!;
    const response = await pool.request({ path: `/api/v1/content${path}`, method: 'GET', headers: { authorization } });
    await response.body.arrayBuffer();
    return response.statusCode;
  };
}

/** Varied printable text, so nothing downstream gets an unrealistically uniform value. */
function documentText(chars: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ';
  let text = '';
  for (let i = 0; i < chars; i++) text += alphabet[(i * 7 + (i >> 3)) % alphabet.length];
  return text;
}

async function createParent(origin: string): Promise<void> {
  const pool = new Pool(origin, { connections: 1 });
  try {
    const response = await pool.request({
      path: `/api/v1/content${parentPath}`,
      method: 'PUT',
      headers: { authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ properties: {} }),
    });
    const text = await response.body.text();
    if (response.statusCode !== 201) throw new Error(`creating ${parentPath} answered ${response.statusCode}: ${text}`);
  } finally {
    await pool.close();
  }
}


function markdownTable(results: readonly ScenarioResult[]): string {
  const ms = (value: number) => value.toFixed(2);
  const lines = [
    '| scenario | clients | ops/s | p50 ms | p99 ms | max ms | errors | ops |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.clients} | ${Math.round(r.opsPerSec)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${ms(r.maxMs)} | ` +
        `${r.errors + r.warmupErrors === 0 ? 0 : `${r.errors} (+${r.warmupErrors} in warm-up)`} | ${r.ops} |`,
    ),
  ];
  return lines.join('\n');
}

function floorText(floor: Floor): string {
  const { fsync, sqlite } = floor;
  return [
    'Physical floor (same disk as the data directory):',
    `- fsync: ${fsync.writes} x (write ${fsync.writeBytes} B + fsync): p50 ${fsync.p50Ms.toFixed(2)} ms, p99 ${fsync.p99Ms.toFixed(2)} ms, ` +
      `max ${fsync.maxMs.toFixed(2)} ms`,
    `- better-sqlite3 (WAL, synchronous=FULL), ${sqlite.rowsPerTransaction} rows of ${sqlite.rowBytes} B per fsynced transaction: ` +
      `${Math.round(sqlite.rowsPerSec)} rows/s (${Math.round(sqlite.transactionsPerSec)} transactions/s; ` +
      `transaction p50 ${sqlite.transactionP50Ms.toFixed(2)} ms, p99 ${sqlite.transactionP99Ms.toFixed(2)} ms)`,
  ].join('\n');
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }

  const tempRoot = mkdtempSync(join(tmpdir(), 'conclave-bench-'));
  let node: BenchNode | undefined;
  let stopOutcome: StopOutcome | undefined;
  const cleanup = async () => {
    try {
      if (node !== undefined) stopOutcome = await node.stop();
    } finally {
      rmSync(tempRoot, { recursive: true, force: true });
    }
  };
  // Ctrl-C must not leave a node running or a temp dir behind; finally blocks do not run on a signal.
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`bench: ${signal}: stopping the node and removing ${tempRoot}\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const results: ScenarioResult[] = [];
  let floor: Floor;
  let documents: number;
  try {
    // The floor runs first and alone, so the node's process does not compete with it for the disk.
    const floorDir = join(tempRoot, 'floor');
    process.stderr.write(`bench: measuring the disk floor in ${tempRoot}\n`);
    floor = { fsync: measureFsync(floorDir), sqlite: measureSqliteInserts(floorDir, options.durationMs) };
    rmSync(floorDir, { recursive: true, force: true });

    node = await startBenchNode(join(tempRoot, 'data'), adminPassword);
    process.stderr.write(`bench: node ${node.pid} ready at ${node.url}\n`);
    // Also pays the one scrypt of the Basic credentials, so no scenario measures it.
    await createParent(node.url);

    const written: string[] = [];
    const write = writer(written);
    for (const clients of options.clientLevels) {
      process.stderr.write(`bench: durable write (PUT 1 KB) with ${clients} client(s)\n`);
      results.push(await runScenario('durable write (PUT 1 KB)', node.url, clients, options, write));
    }
    // The reader draws from every document the writes stored, so it is built after them.
    const read = reader(written);
    for (const clients of options.clientLevels) {
      process.stderr.write(`bench: read (GET 1 KB) with ${clients} client(s)\n`);
      results.push(await runScenario('read (GET 1 KB)', node.url, clients, options, read));
    }
    documents = written.length;
  } catch (err) {
    process.stderr.write(`bench: failed: ${(err as Error).stack ?? String(err)}\n`);
    if (node !== undefined && node.output().trim() !== '') process.stderr.write(`--- node output ---\n${node.output()}\n`);
    await cleanup();
    return 1;
  }
  await cleanup();

  const nodeOutput = node.output().trim();
  const report = {
    ...benchEnvironment(),
    durationMs: options.durationMs,
    warmupMs: options.warmupMs,
    documents,
    floor,
    scenarios: results,
    nodeStop: stopOutcome ?? null,
  };
  mkdirSync(dirname(options.outFile), { recursive: true });
  writeFileSync(options.outFile, `${JSON.stringify(report, null, 2)}\n`);

  process.stdout.write(
    `\nConclave single node, ${report.commit ?? 'unknown commit'}, Node ${report.node}, ${report.cpus} CPU(s) shared by bench and node, ` +
      `${options.durationMs} ms per scenario after ${options.warmupMs} ms warm-up\n\n` +
      `${markdownTable(results)}\n\n${floorText(floor)}\n\nJSON: ${options.outFile}\n`,
  );
  if (stopOutcome !== undefined && (stopOutcome.exit !== 0 || stopOutcome.killed)) {
    process.stderr.write(`bench: the node did not stop cleanly on SIGTERM (exit ${stopOutcome.exit}, killed: ${stopOutcome.killed})\n`);
  }
  if (nodeOutput !== '') process.stderr.write(`bench: the node logged (level warn and above):\n${nodeOutput}\n`);
  return 0;
}

process.exitCode = await main();
