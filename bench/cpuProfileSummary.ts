import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where a node's CPU time went, from the V8 profiles `npm run bench -- --cpu-prof DIR` writes: self time by
 * function and by place (this project's files, each package, Node's internals, native code, the garbage collector,
 * idle).
 *
 *   node dist/bench/cpuProfileSummary.js FILE_OR_DIR... [--top N]
 */

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const projectRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** Self time (µs) by function and by place for one profile. */
export function summarize(profile: CpuProfile): { totalUs: number; byFunction: Map<string, number>; byPlace: Map<string, number> } {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  let totalUs = 0;
  // timeDeltas[i] is the time before sample i; attribute each sample the time until the next one.
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const node = nodes.get(profile.samples[i]!);
    if (node === undefined) continue;
    totalUs += us;
    const frame = node.callFrame;
    const place = placeOf(frame.url, frame.functionName);
    const name = `${frame.functionName || '(anonymous)'} ${place}${frame.url === '' ? '' : `:${frame.lineNumber + 1}`}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byPlace.set(place, (byPlace.get(place) ?? 0) + us);
  }
  return { totalUs, byFunction, byPlace };
}

/** A short name of where a function lives: src/..., a package, node:internal, or V8's pseudo-frames. */
function placeOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return url.startsWith('node:internal') ? 'node:internal' : url;
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (packageMatch !== null) return packageMatch[1]!;
  const inProject = relative(projectRoot, path);
  return inProject.startsWith('..') ? path : inProject.replace(/^dist\//, '').replace(/\.js$/, '.ts');
}

function profilesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).flatMap((entry) => profilesUnder(join(path, entry))).filter((file) => file.endsWith('.cpuprofile'));
}

function table(title: string, entries: Map<string, number>, totalUs: number, top: number): string {
  const rows = [...entries].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `| ${title} | self ms | % |`,
    '|---|--:|--:|',
    ...rows.map(([name, us]) => `| ${name.replace(/\|/g, '\\|')} | ${(us / 1000).toFixed(0)} | ${((100 * us) / totalUs).toFixed(1)} |`),
  ].join('\n');
}

function main(): number {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
  const paths = args.filter((_, i) => i !== topAt && i !== topAt + 1);
  if (paths.length === 0 || !Number.isInteger(top) || top < 1) {
    process.stderr.write('usage: node dist/bench/cpuProfileSummary.js FILE_OR_DIR... [--top N]\n');
    return 2;
  }
  for (const file of paths.flatMap((p) => profilesUnder(resolve(p)))) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const { totalUs, byFunction, byPlace } = summarize(profile);
    const wallMs = (profile.endTime - profile.startTime) / 1000;
    process.stdout.write(`\n${file}: ${(totalUs / 1000).toFixed(0)} ms sampled over ${wallMs.toFixed(0)} ms\n\n`);
    process.stdout.write(`${table('place', byPlace, totalUs, top)}\n\n${table('function', byFunction, totalUs, top)}\n`);
  }
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main();
