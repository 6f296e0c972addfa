/**
 * `npm run chaos`: faults on real processes, histories checked (see runChaos.ts).
 *
 *   npm run chaos -- [--nodes 3|5] [--time SECONDS] [--faults kill,pause,restart,partition,slow,disk] [--seed S]
 *                    [--clients N] [--keys K] [--out DIR] [--bug NAME]
 *
 * Exit code 0 when every check passed, 1 when one failed (the summary says which and how to replay), 2 on bad input.
 * Needs root: every node runs in a network namespace of its own (namespaceNetwork.ts says why).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { join, resolve } from 'node:path';

import { coordinatorBugs, type CoordinatorBug } from '../../src/core/clusterCoordinator.js';
import { faultKinds, type FaultKind } from './nemesis.js';
import { runChaos, type ChaosSummary } from './runChaos.js';

function integer(name: string, minimum: number, maximum = Number.MAX_SAFE_INTEGER) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < minimum || value > maximum) throw new InvalidArgumentError(`${name} must be an integer from ${minimum} to ${maximum}`);
    return value;
  };
}

function faultList(text: string): FaultKind[] {
  if (text === 'all') return [...faultKinds];
  if (text === 'none') return [];
  const kinds = text.split(',').map((s) => s.trim());
  for (const k of kinds) if (!(faultKinds as readonly string[]).includes(k)) throw new InvalidArgumentError(`unknown fault ${k}: use ${faultKinds.join(', ')}, all or none`);
  return kinds as FaultKind[];
}

export function printSummary(summary: ChaosSummary, say: (line: string) => void): void {
  say(`\n${summary.ok ? 'PASSED' : 'FAILED'} — seed ${summary.seed}, ${summary.nodes} nodes, ${summary.timeMs / 1000} s${summary.injectedBug !== null ? `, injected bug ${summary.injectedBug}` : ''}`);
  say(`operations: ${Object.entries(summary.operations).map(([f, byType]) => `${f} ${Object.entries(byType).map(([t, n]) => `${t}=${n}`).join(' ')}`).join('; ')}`);
  say(`faults: ${summary.faults.total} (${Object.entries(summary.faults.byKind).map(([k, n]) => `${k} ${n}`).join(', ')})${summary.faults.failedToInject > 0 ? `, ${summary.faults.failedToInject} with errors` : ''}`);
  say(`convergence: ${summary.convergence.ok ? `every node at index ${summary.convergence.appliedIndex}, one digest, ${summary.convergence.ms} ms after healing` : `FAILED: ${summary.convergence.problem ?? ''}`}`);
  for (const [name, check] of Object.entries(summary.checks)) {
    say(`check ${name}: ${check.ok ? 'ok' : 'FAILED'} (${check.checked} checked)${check.problems.length > 0 ? `\n  ${check.problems.join('\n  ')}` : ''}`);
  }
  if (summary.unexpectedExits.length > 0) say(`unexpected exits: ${summary.unexpectedExits.map((x) => `${x.node} (${x.code})`).join(', ')}`);
  say(`history, faults, node logs and summary: ${summary.outDir}`);
  say(`replay the schedule: ${summary.replay}`);
}

async function main(): Promise<void> {
  const program = new Command('chaos')
    .description('Faults injected into a real Conclave cluster; the history checked')
    .addOption(new Option('--nodes <N>', 'cluster size').argParser(integer('--nodes', 3, 9)).default(3))
    .addOption(new Option('--time <S>', 'seconds of faults and load').argParser(integer('--time', 5)).default(120))
    .addOption(new Option('--faults <LIST>', `comma-separated: ${faultKinds.join(', ')}; all; none`).argParser(faultList).default([...faultKinds], 'all'))
    .addOption(new Option('--seed <S>', 'the schedule\'s seed (default: from the clock; printed)').argParser(integer('--seed', 0)))
    .addOption(new Option('--clients <N>', 'concurrent clients').argParser(integer('--clients', 1, 256)).default(8))
    .addOption(new Option('--keys <K>', 'registers the clients share').argParser(integer('--keys', 1, 1000)).default(5))
    .addOption(new Option('--out <DIR>', 'where the history, logs and summary go (default chaos-results/<seed>)'))
    .addOption(new Option('--bug <NAME>', 'test-only: build every node with a broken coordination rule (the run must fail)').choices(coordinatorBugs))
    .showHelpAfterError();
  program.parse();
  const opts = program.opts<{ nodes: number; time: number; faults: FaultKind[]; seed?: number; clients: number; keys: number; out?: string; bug?: CoordinatorBug }>();
  const seed = opts.seed ?? Date.now() % 1_000_000_000;
  const summary = await runChaos(
    {
      nodes: opts.nodes,
      timeMs: opts.time * 1000,
      faults: opts.faults,
      seed,
      clients: opts.clients,
      keys: opts.keys,
      outDir: resolve(opts.out ?? join('chaos-results', String(seed))),
      opTimeoutMs: 5_000,
      convergeTimeoutMs: 120_000,
      diskMib: 512,
      searchStepsMax: 20_000_000,
      ...(opts.bug !== undefined ? { injectedBug: opts.bug } : {}),
    },
    (line) => console.log(line),
  );
  printSummary(summary, (line) => console.log(line));
  process.exitCode = summary.ok ? 0 : 1;
}

if (process.env['NODE_TEST_CONTEXT'] === undefined) {
  // `node --test dist/test/` runs every file under a test/ directory; this one is a tool, not a test.
  await main();
}
