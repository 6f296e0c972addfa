import { readFileSync } from 'node:fs';

/**
 * Resident memory of a process (Linux /proc), sampled while something runs: what a backup or a snapshot costs the
 * server that writes it, taken as the peak over the run minus what the process held just before it.
 */

/** VmRSS of a process in bytes; null when it cannot be read (not Linux, process gone). */
export function processRssBytes(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

export interface RssSample {
  /** RSS when sampling began; null when it could not be read. */
  readonly beforeBytes: number | null;
  /** The largest RSS seen, the first and last samples included. */
  readonly peakBytes: number | null;
  /** peak minus before (0 when the process shrank). */
  readonly extraBytes: number | null;
  readonly samples: number;
}

/**
 * Samples a process's RSS every `intervalMs` until stop() is called. A peak shorter than the interval can be missed;
 * what a backup holds (buffers of a stream, a database copy's cache) stays for the whole transfer, so 20 ms sees it.
 */
export function sampleRss(pid: number, intervalMs = 20): { stop(): RssSample } {
  const beforeBytes = processRssBytes(pid);
  let peakBytes = beforeBytes;
  let samples = beforeBytes === null ? 0 : 1;
  const take = () => {
    const rss = processRssBytes(pid);
    if (rss === null) return;
    samples++;
    peakBytes = peakBytes === null ? rss : Math.max(peakBytes, rss);
  };
  const timer = setInterval(take, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      take();
      const extraBytes = beforeBytes === null || peakBytes === null ? null : Math.max(0, peakBytes - beforeBytes);
      return { beforeBytes, peakBytes, extraBytes, samples };
    },
  };
}
