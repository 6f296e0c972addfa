import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';

/** Where a benchmark ran: every results file starts with this, so figures can be traced to a build and a machine. */
export interface BenchEnvironment {
  readonly commit: string | null;
  readonly node: string;
  readonly cpus: number;
  readonly cpuModel: string | null;
  readonly date: string;
}

export function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || null;
  } catch {
    return null;
  }
}

export function benchEnvironment(): BenchEnvironment {
  return { commit: gitCommit(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, date: new Date().toISOString() };
}
