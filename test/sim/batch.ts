/**
 * Runs many seeds on worker threads, for the command line and for the test. Each worker runs every `stride`-th
 * seed of the list and reports each seed as it finishes. Seeds are independent runs,
 * so the verdicts do not depend on how many workers there are; only the order of the reports does.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { describeFailure, runSimulation, type SimulationOptions } from './simulate.js';

/** Seeds from..from+count-1, or an explicit list. */
export type SeedSet = { readonly from: number; readonly count: number } | { readonly list: readonly number[] };

export interface BatchOptions {
  readonly seeds: SeedSet;
  readonly workers: number;
  readonly simulation?: SimulationOptions;
  /** Stop (terminating the workers) once this many seeds have failed. */
  readonly maxFailures?: number;
  readonly onFailure?: (failure: BatchFailure) => void;
  readonly onProgress?: (done: number, failed: number) => void;
}

export interface BatchFailure {
  readonly seed: number;
  /** The failure, its run description and the replay command, several lines. */
  readonly report: string;
}

export interface BatchSummary {
  readonly total: number;
  readonly done: number;
  readonly failures: readonly BatchFailure[];
  readonly events: number;
  readonly operations: number;
  readonly stoppedEarly: boolean;
}

interface WorkerJob {
  readonly kind: 'conclaveSimulatorBatch';
  readonly seeds: SeedSet;
  readonly stride: number;
  readonly offset: number;
  readonly simulation: SimulationOptions;
}

type WorkerReport =
  | { readonly kind: 'progress'; readonly done: number; readonly events: number; readonly operations: number }
  | { readonly kind: 'failure'; readonly seed: number; readonly report: string }
  | { readonly kind: 'done' };

export function seedCount(seeds: SeedSet): number {
  return 'list' in seeds ? seeds.list.length : seeds.count;
}

function seedAt(seeds: SeedSet, i: number): number {
  return 'list' in seeds ? seeds.list[i]! : seeds.from + i;
}

function runJob(job: WorkerJob): void {
  const port = parentPort!;
  let done = 0;
  let events = 0;
  let operations = 0;
  const total = seedCount(job.seeds);
  for (let i = job.offset; i < total; i += job.stride) {
    const result = runSimulation(seedAt(job.seeds, i), job.simulation);
    done++;
    events += result.stats.events;
    operations += result.stats.operations.invoked;
    if (!result.ok) port.postMessage({ kind: 'failure', seed: result.seed, report: describeFailure(result) } satisfies WorkerReport);
    port.postMessage({ kind: 'progress', done, events, operations } satisfies WorkerReport);
    done = events = operations = 0;
  }
  port.postMessage({ kind: 'done' } satisfies WorkerReport);
}

export async function runBatch(options: BatchOptions): Promise<BatchSummary> {
  const total = seedCount(options.seeds);
  const workers = Math.max(1, Math.min(options.workers, total));
  const maxFailures = options.maxFailures ?? Infinity;
  const failures: BatchFailure[] = [];
  let done = 0;
  let events = 0;
  let operations = 0;
  let stoppedEarly = false;
  const threads: Worker[] = [];
  await new Promise<void>((resolve, reject) => {
    let running = workers;
    const stop = () => {
      for (const thread of threads) void thread.terminate();
      resolve();
    };
    for (let offset = 0; offset < workers; offset++) {
      const job: WorkerJob = { kind: 'conclaveSimulatorBatch', seeds: options.seeds, stride: workers, offset, simulation: options.simulation ?? {} };
      const thread = new Worker(new URL(import.meta.url), { workerData: job });
      threads.push(thread);
      thread.on('error', (err) => {
        for (const t of threads) void t.terminate();
        reject(err);
      });
      thread.on('message', (report: WorkerReport) => {
        if (stoppedEarly) return;
        if (report.kind === 'failure') {
          const failure = { seed: report.seed, report: report.report };
          failures.push(failure);
          options.onFailure?.(failure);
          if (failures.length >= maxFailures) {
            stoppedEarly = true;
            stop();
          }
        } else if (report.kind === 'progress') {
          done += report.done;
          events += report.events;
          operations += report.operations;
          options.onProgress?.(done, failures.length);
        } else if (--running === 0) {
          resolve();
        }
      });
    }
  });
  return { total, done, failures, events, operations, stoppedEarly };
}

// A worker thread started by runBatch. (`node --test dist/test/` also runs this file, on the main thread: a no-op.)
if (!isMainThread && (workerData as WorkerJob | undefined)?.kind === 'conclaveSimulatorBatch') runJob(workerData as WorkerJob);
