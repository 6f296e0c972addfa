/**
 * The simulator's command line: `npm run sim -- --seeds N` runs N seeds, `npm run sim -- --seed S` replays one.
 *
 *   --seed S         run one seed and print its parameters, statistics and (with --trace, or on failure) its trace
 *   --seeds N        run N seeds: --from F, F+1, … (default F: derived from the wall clock, and printed)
 *   --from F         the first seed of --seeds
 *   --bug NAME       build every node with an injected bug: in the coordinator (quorumIsHalf, voteForStaleCandidate,
 *                  commitBeforeQuorum, skippedTicksStopTheClock, stickyOnlyAboveOwnTerm, ignoreVotingExclusions,
 *                  acknowledgeBeforeInSyncApplied) or in the runtime's parts (acknowledgeOnApply, sendBeforeDurable, readJoinsAskedConfirmation)
 *   --workers K      worker threads for --seeds (default: the machine's available parallelism)
 *   --max-failures M stop after M failing seeds (default 10)
 *   --trace          print the whole event trace of --seed
 *
 * Exit status 1 when any seed fails. The simulator itself never reads the clock; only this file does, to choose
 * a fresh starting seed and to report how long a batch took.
 */
import { availableParallelism } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { coordinatorBugs } from '../../src/core/clusterCoordinator.js';
import { runtimeBugs } from '../../src/node/writeTracker.js';
import { runBatch } from './batch.js';
import { describeFailure, runSimulation, type InjectedBug, type SimulationOptions, type SimulationResult } from './simulate.js';

const bugs: readonly InjectedBug[] = [...coordinatorBugs, ...runtimeBugs];

function printOne(result: SimulationResult, fullTrace: boolean): void {
  console.log(`seed ${result.seed}: ${result.description}`);
  const s = result.stats;
  console.log(
    `  ${s.events} events, ${result.time} time units, ${s.committed} entries committed, ${s.elections} masters elected, ` +
      `converged ${s.convergenceUnits} units after healing`,
  );
  console.log(`  operations: ${s.operations.invoked} invoked, ${s.operations.ok} ok, ${s.operations.fail} fail, ${s.operations.info} info`);
  console.log(`  faults: ${Object.entries(s.faults).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`  messages: ${Object.entries(s.messages).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (result.traceLines !== undefined && (fullTrace || !result.ok)) {
    const lines = fullTrace ? result.traceLines : result.traceLines.slice(-300);
    if (!fullTrace) console.log(`  last ${lines.length} of ${result.traceLines.length} trace lines (--trace for all):`);
    for (const line of lines) console.log(line);
  }
  console.log(result.ok ? `seed ${result.seed} ok` : describeFailure(result));
}

async function runMany(from: number, count: number, workers: number, maxFailures: number, options: SimulationOptions): Promise<number> {
  console.log(`running seeds ${from}..${from + count - 1} on ${workers} worker${workers === 1 ? '' : 's'}${options.injectedBug !== undefined ? ` with injected bug ${options.injectedBug}` : ''}`);
  const started = performance.now();
  const step = Math.max(50, Math.floor(count / 20));
  let nextReport = step;
  let doneSoFar = 0;
  let failedSoFar = 0;
  // Stopping a long batch with Ctrl-C (or kill) still says how far it got.
  const interrupted = (signal: string) => {
    const seconds = (performance.now() - started) / 1000;
    console.log(`${signal}: ${doneSoFar} of ${count} seeds done in ${seconds.toFixed(1)} s, ${failedSoFar} failed`);
    process.exit(failedSoFar > 0 ? 1 : 130);
  };
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted);
  const summary = await runBatch({
    seeds: { from, count },
    workers,
    simulation: options,
    maxFailures,
    onFailure: (failure) => console.log(failure.report),
    onProgress: (done, failed) => {
      doneSoFar = done;
      failedSoFar = failed;
      if (done < nextReport || done >= count) return;
      nextReport += step;
      const seconds = (performance.now() - started) / 1000;
      console.log(`  ${done}/${count} seeds, ${failed} failed, ${seconds.toFixed(1)} s, ${(done / seconds).toFixed(1)} seeds/s`);
    },
  });
  const seconds = (performance.now() - started) / 1000;
  if (summary.stoppedEarly) console.log(`stopped after ${summary.failures.length} failures (--max-failures)`);
  console.log(
    `${summary.done} seeds in ${seconds.toFixed(1)} s (${(summary.done / seconds).toFixed(1)} seeds/s, ${workers} workers): ` +
      `${summary.failures.length} failed; ${summary.events} simulator events, ${summary.operations} client operations`,
  );
  if (summary.failures.length > 0) console.log(`failing seeds: ${[...summary.failures].map((f) => f.seed).sort((a, b) => a - b).join(' ')}`);
  return summary.failures.length;
}

function integer(name: string, minimum: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < minimum) throw new InvalidArgumentError(`${name} must be an integer ≥ ${minimum}`);
    return value;
  };
}

async function main(): Promise<void> {
  const program = new Command('sim')
    .description('Deterministic simulator of the Conclave coordination core')
    .addOption(new Option('--seed <S>', 'run (replay) one seed').argParser(integer('--seed', 0)))
    .addOption(new Option('--seeds <N>', 'run N seeds').argParser(integer('--seeds', 1)))
    .addOption(new Option('--from <F>', 'first seed of --seeds (default: from the wall clock)').argParser(integer('--from', 0)))
    .addOption(new Option('--bug <name>', 'inject a bug into every core').choices(bugs))
    .addOption(new Option('--workers <K>', 'worker threads for --seeds').argParser(integer('--workers', 1)))
    .addOption(new Option('--max-failures <M>', 'stop after M failing seeds').argParser(integer('--max-failures', 1)).default(10))
    .option('--trace', 'print the whole trace of --seed')
    .showHelpAfterError();
  program.parse();
  const opts = program.opts<{ seed?: number; seeds?: number; from?: number; bug?: InjectedBug; workers?: number; maxFailures: number; trace?: boolean }>();
  const options: SimulationOptions = opts.bug !== undefined ? { injectedBug: opts.bug } : {};
  if (opts.seed !== undefined) {
    const result = runSimulation(opts.seed, { ...options, trace: true });
    printOne(result, opts.trace === true);
    process.exitCode = result.ok ? 0 : 1;
    return;
  }
  const count = opts.seeds;
  if (count === undefined) return program.error('give --seed S or --seeds N');
  // A fresh range each time unless told: a batch is for finding new failures. Printed, so it can be rerun.
  const from = opts.from ?? Math.floor(Date.now() / 1000) * 1000;
  const workers = Math.min(opts.workers ?? availableParallelism(), count);
  const failures = await runMany(from, count, workers, opts.maxFailures, options);
  process.exitCode = failures > 0 ? 1 : 0;
}

if (process.env['NODE_TEST_CONTEXT'] === undefined) {
  // `node --test dist/test/` runs every file under a test/ directory; this one is a tool, not a test.
  await main();
}
