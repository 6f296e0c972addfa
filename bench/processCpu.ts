import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * CPU time of server processes (Linux /proc), so a scenario can say how many cores the servers used and how much
 * CPU one operation cost them: on a machine whose cores the client and every server share, that tells a CPU-bound
 * figure from a wait-bound one.
 */

const ticksPerSec = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User plus system CPU of a process so far, in ms; null when it cannot be read (not Linux, process gone). */
export function processCpuMs(pid: number): number | null {
  const split = processCpuSplitMs(pid);
  return split === null ? null : split.userMs + split.systemMs;
}

/** User and system (kernel: syscalls, fsync's journaling) CPU of a process so far, in ms; null when unreadable. */
export function processCpuSplitMs(pid: number): { readonly userMs: number; readonly systemMs: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) in brackets: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { userMs: (Number(fields[11]) * 1000) / ticksPerSec, systemMs: (Number(fields[12]) * 1000) / ticksPerSec };
  } catch {
    return null;
  }
}

/** CPU the given processes used while `run` ran, in cores (CPU time over wall time); null when it could not be read. */
export async function withServerCpu<T>(pids: readonly number[], run: () => Promise<T>): Promise<{ result: T; serverCpuCores: number | null }> {
  const before = pids.map(processCpuMs);
  const startMs = performance.now();
  const result = await run();
  const wallMs = performance.now() - startMs;
  const after = pids.map(processCpuMs);
  let usedMs = 0;
  for (let i = 0; i < pids.length; i++) {
    const [from, to] = [before[i], after[i]];
    if (from === null || from === undefined || to === null || to === undefined) return { result, serverCpuCores: null };
    usedMs += to - from;
  }
  return { result, serverCpuCores: usedMs / wallMs };
}
