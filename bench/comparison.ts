import type { LoadResult } from './load.js';

/**
 * Conclave beside etcd, figure by figure, from one bench run: each row a figure both systems produced under the same
 * load on the same machine, with the ratio Conclave/etcd (for a time, lower is better; for a rate, higher). Targets
 * of issues 7 and 14 are shown against the figures, never enforced. Written as a Markdown table and an SVG chart.
 */

export interface ComparedScenario extends LoadResult {
  readonly name: string;
  /** CPU all servers used over the scenario, in cores. */
  readonly serverCpuCores?: number | null;
}

/** CPU all servers spent per operation, in ms (the scenario's CPU rate over its operation rate). */
function cpuPerOpMs(s: ComparedScenario | undefined): number | null {
  if (s === undefined || s.serverCpuCores === undefined || s.serverCpuCores === null || s.opsPerSec === 0) return null;
  return (s.serverCpuCores * 1000) / s.opsPerSec;
}

export interface FailoverSummary {
  readonly trials: number;
  readonly failedOver: number;
  readonly medianMs: number | null;
  readonly maxMs: number | null;
}

export interface ComparisonInput {
  /** Conclave's writes at each client level, spread over the 3 nodes, keyed by client count. */
  readonly conclaveWrites: ReadonlyMap<number, ComparedScenario>;
  readonly etcdWrites: ReadonlyMap<number, ComparedScenario>;
  readonly conclaveReads: { readonly sequential?: ComparedScenario; readonly linearizable?: ComparedScenario };
  readonly etcdReads: { readonly serializable?: ComparedScenario; readonly linearizable?: ComparedScenario };
  readonly conclaveFailover: { readonly kill: FailoverSummary; readonly stop: FailoverSummary } | null;
  readonly etcdFailover: { readonly kill: FailoverSummary; readonly stop: FailoverSummary } | null;
  readonly conclaveCatchUpMibPerSec: number | null;
  readonly etcdCatchUpMibPerSec: number | null;
  /** Says what the catch-up wrote (both systems wrote the same). */
  readonly catchUpLabel: string;
  /** The backup part's figures (bench/backup.ts, bench/etcdBackup.ts); absent when neither system ran it. */
  readonly backup?: {
    /** What both systems stored. */
    readonly label: string;
    readonly conclave: BackupFigures | null;
    readonly etcd: BackupFigures | null;
  };
}

/** One system's backup figures: Conclave's GET /api/v1/admin/backup and restore, etcd's etcdctl snapshot save and restore. */
export interface BackupFigures {
  readonly backupMbPerSec: number;
  readonly extraRssMb: number | null;
  /** Write throughput beside a backup over that without one, in percent. */
  readonly writesKeptPercent: number;
  readonly writeClients: number;
  /** null: restore not measured (the row says so). */
  readonly restoreMbPerSec: number | null;
  readonly restoreSeconds: number | null;
}

export interface ComparisonRow {
  readonly group: string;
  readonly figure: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  readonly conclave: number | null;
  readonly etcd: number | null;
  /** conclave / etcd; null when either is missing (or etcd's is 0). */
  readonly ratio: number | null;
  /** The issue's target for this figure, in words, and whether this run met it (null: no target, or a figure missing). */
  readonly target: string | null;
  readonly met: boolean | null;
}

type Target = { readonly text: string; readonly met: (conclave: number, etcd: number | null, ratio: number | null) => boolean | null };

function row(group: string, figure: string, unit: string, better: 'higher' | 'lower', conclave: number | null, etcd: number | null, target?: Target): ComparisonRow {
  const ratio = conclave === null || etcd === null || etcd === 0 ? null : conclave / etcd;
  return { group, figure, unit, better, conclave, etcd, ratio, target: target?.text ?? null, met: target === undefined || conclave === null ? null : target.met(conclave, etcd, ratio) };
}

const ratioAtLeast = (min: number): Target => ({ text: `≥ ${min}× etcd`, met: (_c, _e, ratio) => (ratio === null ? null : ratio >= min) });

export function compare(input: ComparisonInput): ComparisonRow[] {
  const rows: ComparisonRow[] = [];
  const levels = [...new Set([...input.conclaveWrites.keys(), ...input.etcdWrites.keys()])].sort((a, b) => a - b);
  for (const clients of levels) {
    const c = input.conclaveWrites.get(clients);
    const e = input.etcdWrites.get(clients);
    const group = `durable writes of 1 KB, ${clients} client${clients === 1 ? '' : 's'}`;
    rows.push(row(group, 'throughput', 'ops/s', 'higher', c?.opsPerSec ?? null, e?.opsPerSec ?? null, clients === 64 ? ratioAtLeast(3) : undefined));
    rows.push(row(group, 'p50', 'ms', 'lower', c?.p50Ms ?? null, e?.p50Ms ?? null));
    rows.push(
      row(group, 'p99', 'ms', 'lower', c?.p99Ms ?? null, e?.p99Ms ?? null, clients === 64 ? { text: '≤ etcd', met: (_c, _e, ratio) => (ratio === null ? null : ratio <= 1) } : undefined),
    );
    if (clients === 64) rows.push(row(group, 'servers\' CPU per write', 'ms', 'lower', cpuPerOpMs(c), cpuPerOpMs(e)));
  }
  const reads: Array<[string, ComparedScenario | undefined, ComparedScenario | undefined]> = [
    ['reads of 1 KB: Conclave sequential, etcd serializable', input.conclaveReads.sequential, input.etcdReads.serializable],
    ['reads of 1 KB: linearizable', input.conclaveReads.linearizable, input.etcdReads.linearizable],
  ];
  for (const [group, c, e] of reads) {
    const clients = c?.clients ?? e?.clients;
    const label = `${group}, ${clients ?? '?'} clients`;
    rows.push(row(label, 'throughput', 'ops/s', 'higher', c?.opsPerSec ?? null, e?.opsPerSec ?? null, ratioAtLeast(3)));
    rows.push(row(label, 'p50', 'ms', 'lower', c?.p50Ms ?? null, e?.p50Ms ?? null));
    rows.push(row(label, 'p99', 'ms', 'lower', c?.p99Ms ?? null, e?.p99Ms ?? null));
    rows.push(row(label, 'servers\' CPU per read', 'ms', 'lower', cpuPerOpMs(c), cpuPerOpMs(e)));
  }
  const cf = input.conclaveFailover;
  const ef = input.etcdFailover;
  const trials = (s: FailoverSummary | undefined) => (s === undefined ? '' : `${s.failedOver}/${s.trials}`);
  const killGroup = `failover after kill -9 of the leader (trials failed over: Conclave ${trials(cf?.kill) || '-'}, etcd ${trials(ef?.kill) || '-'})`;
  rows.push(
    row(killGroup, 'median', 'ms', 'lower', cf?.kill.medianMs ?? null, ef?.kill.medianMs ?? null, {
      text: '< 1000 ms and < etcd',
      met: (c, e) => (e === null ? null : c < 1000 && c < e),
    }),
  );
  rows.push(row(killGroup, 'max', 'ms', 'lower', cf?.kill.maxMs ?? null, ef?.kill.maxMs ?? null));
  const stopGroup = `failover after SIGSTOP of the leader (trials failed over: Conclave ${trials(cf?.stop) || '-'}, etcd ${trials(ef?.stop) || '-'})`;
  rows.push(row(stopGroup, 'median', 'ms', 'lower', cf?.stop.medianMs ?? null, ef?.stop.medianMs ?? null));
  rows.push(row(stopGroup, 'max', 'ms', 'lower', cf?.stop.maxMs ?? null, ef?.stop.maxMs ?? null, { text: '< 3000 ms', met: (c) => c < 3000 }));
  rows.push(
    row(`catch-up of a member that was down: ${input.catchUpLabel}`, 'restart to in sync', 'MiB/s', 'higher', input.conclaveCatchUpMibPerSec, input.etcdCatchUpMibPerSec, {
      text: '≥ 50 MiB/s',
      met: (c) => c >= 50,
    }),
  );
  if (input.backup !== undefined) {
    const { label, conclave: c, etcd: e } = input.backup;
    const group = `backup from a replica (follower) to a file, fsynced: ${label}`;
    rows.push(row(group, 'archive bytes / time (etcd: snapshot save)', 'MB/s', 'higher', c?.backupMbPerSec ?? null, e?.backupMbPerSec ?? null, { text: '≥ 100 MB/s', met: (v) => v >= 100 }));
    rows.push(row(group, 'extra RSS of the node it came from', 'MB', 'lower', c?.extraRssMb ?? null, e?.extraRssMb ?? null, { text: '< 100 MB', met: (v) => v < 100 }));
    const clients = c?.writeClients ?? e?.writeClients ?? '?';
    rows.push(
      row(`durable writes of 1 KB, ${clients} clients over every node, beside backups taken back to back`, 'throughput kept (beside / without)', '%', 'higher', c?.writesKeptPercent ?? null, e?.writesKeptPercent ?? null, {
        text: '≥ 80 %',
        met: (v) => v >= 80,
      }),
    );
    const restoreGroup = 'restore of that backup into a new cluster of one (conclave restore --as new-cluster; etcdctl snapshot restore)';
    rows.push(row(restoreGroup, 'archive bytes / wall time', 'MB/s', 'higher', c?.restoreMbPerSec ?? null, e?.restoreMbPerSec ?? null, { text: '≥ 100 MB/s', met: (v) => v >= 100 }));
    rows.push(row(restoreGroup, 'wall time', 's', 'lower', c?.restoreSeconds ?? null, e?.restoreSeconds ?? null));
  }
  return rows;
}

function figure(value: number | null, unit: string): string {
  if (value === null) return 'missing';
  if (unit === 'ops/s') return String(Math.round(value));
  if (unit === 'MiB/s' || unit === 'MB/s' || unit === '%' || unit === 'MB' || unit === 's') return value.toFixed(1);
  if (value < 1) return value.toFixed(3);
  return value >= 100 ? value.toFixed(0) : value.toFixed(2);
}

const ratioText = (ratio: number | null): string => (ratio === null ? '-' : `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×`);

export function comparisonTable(rows: readonly ComparisonRow[]): string {
  const lines = ['| scenario | figure | Conclave | etcd | Conclave/etcd | better | target | met |', '|---|---|--:|--:|--:|---|---|---|'];
  for (const r of rows) {
    const met = r.met === null ? '' : r.met ? 'yes' : '**no**';
    lines.push(`| ${r.group} | ${r.figure} (${r.unit}) | ${figure(r.conclave, r.unit)} | ${figure(r.etcd, r.unit)} | ${ratioText(r.ratio)} | ${r.better} | ${r.target ?? ''} | ${met} |`);
  }
  return lines.join('\n');
}

const escapeXml = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A bar chart, one pair of bars per figure (Conclave above, etcd below), each pair scaled to its larger value, with
 * both values and the ratio written out: a reader compares within a row, never across rows of different units.
 */
export function comparisonChart(rows: readonly ComparisonRow[], title: string): string {
  const labelWidth = 430;
  const barWidthMax = 330;
  const ratioWidth = 140;
  const rowHeight = 34;
  const top = 62;
  const width = labelWidth + barWidthMax + ratioWidth + 20;
  const height = top + rows.length * rowHeight + 20;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    `<rect x="10" y="32" width="12" height="10" fill="#2b6cb0"/><text x="26" y="41">Conclave</text>`,
    `<rect x="90" y="32" width="12" height="10" fill="#dd8a2e"/><text x="106" y="41">etcd</text>`,
    `<text x="160" y="41" fill="#555">each pair scaled to its larger value; right: Conclave/etcd (and which way is better)</text>`,
  ];
  rows.forEach((r, i) => {
    const y = top + i * rowHeight;
    if (i % 2 === 0) parts.push(`<rect x="0" y="${y - 4}" width="${width}" height="${rowHeight}" fill="#f4f6f8"/>`);
    const group = r.group.length > 68 ? `${r.group.slice(0, 66)}…` : r.group;
    parts.push(`<text x="10" y="${y + 10}">${escapeXml(group)}</text>`);
    parts.push(`<text x="10" y="${y + 23}" fill="#555">${escapeXml(`${r.figure} (${r.unit})`)}</text>`);
    const scale = Math.max(r.conclave ?? 0, r.etcd ?? 0);
    const bar = (value: number | null, dy: number, color: string) => {
      const x = labelWidth;
      if (value === null) {
        parts.push(`<text x="${x}" y="${y + dy + 9}" fill="#a00">missing</text>`);
        return;
      }
      const w = scale === 0 ? 0 : Math.max(1, (value / scale) * (barWidthMax - 70));
      parts.push(`<rect x="${x}" y="${y + dy}" width="${w.toFixed(1)}" height="11" fill="${color}"/>`);
      parts.push(`<text x="${(x + w + 4).toFixed(1)}" y="${y + dy + 9}">${figure(value, r.unit)}</text>`);
    };
    bar(r.conclave, 0, '#2b6cb0');
    bar(r.etcd, 13, '#dd8a2e');
    const met = r.met === null ? '' : r.met ? ' ✓' : ' ✗';
    parts.push(`<text x="${labelWidth + barWidthMax + 4}" y="${y + 16}" font-weight="bold">${escapeXml(`${ratioText(r.ratio)} (${r.better} better)${met}`)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
