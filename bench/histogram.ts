/**
 * Latency samples in milliseconds. Every sample is kept and sorted once at the end: a bench run records at most a
 * few hundred thousand samples, so exact percentiles cost less than getting an HDR bucket layout right.
 */
export class LatencyHistogram {
  private readonly samplesMs: number[] = [];

  record(valueMs: number): void {
    this.samplesMs.push(valueMs);
  }

  get count(): number {
    return this.samplesMs.length;
  }

  summary(): LatencySummary {
    const sorted = Float64Array.from(this.samplesMs).sort();
    return {
      count: sorted.length,
      p50Ms: percentileOf(sorted, 50),
      p99Ms: percentileOf(sorted, 99),
      maxMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1]!,
    };
  }
}

export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Nearest-rank percentile: the smallest sample that at least p% of samples do not exceed (never interpolated). */
function percentileOf(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}
