import { Command, Option } from 'commander';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, rm, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { basename, dirname, resolve } from 'node:path';
import { Agent, request } from 'undici';

import { discardSink, readArchive } from '../backup/archiveReader.js';
import { archiveBytes } from '../backup/archiveWriter.js';
import type { BackupManifest } from '../backup/manifest.js';
import { restoreBackup, type RestoreMode, type RestoreResult } from '../backup/restore.js';
import { readManifestOfFile, verifyBackup, type VerifyReport } from '../backup/verify.js';
import { readClusterSecretFile } from '../config/clusterSecret.js';
import { ConclaveError, errorCatalogue, isConclaveError, type ErrorCode } from '../errors/catalogue.js';
import { SyncedFileWriter } from '../storage/fileWriter.js';
import { fsyncDirectory } from '../storage/snapshotStore.js';
import { catalogueError, defaultUrl, describeFetchError, normaliseUrl, StatusFailure } from './statusCommand.js';

/**
 * `conclave backup` (take one from a running node into a file), `conclave backup verify` and `conclave restore`.
 * Each exits 0 only when everything held; otherwise 1 with `conclave: <message> (<CODE>)`.
 */

/** The node answers (headers) within this; the body may then take as long as it needs, chunk after chunk. */
const headersTimeoutMs = 120_000;
/** Silence between two chunks of a backup stream longer than this is a dead transfer. */
const bodyIdleTimeoutMs = 300_000;
const progressLineIntervalMs = 5_000;
const progressTtyIntervalMs = 200;

interface BackupFlags {
  url: string;
  out?: string;
  since?: string;
  consistency?: string;
  user?: string;
  retryMs?: string;
}

/** The default of --retry-ms: a failover, or another backup ending, takes well under this. */
const retryMsDefault = 60_000;
/** The first pause between two attempts, doubled after each, up to retryPauseMsMax. */
const retryPauseMsMin = 250;
const retryPauseMsMax = 4_000;

export function backupCommands(program: Command): void {
  const backup = new Command('backup')
    .description('Take a backup of a running node into a file (GET /api/v1/admin/backup); `backup verify FILE` checks one.')
    .option('--url <url>', 'HTTP address of the node to back up', defaultUrl)
    .option('--out <file>', 'the backup file to write (written under a temporary name beside it, then linked to FILE once complete; never overwrites)')
    .option('--since <previous>', 'an earlier backup: write an incremental one holding only the blobs that one (and its chain) lacks')
    .addOption(new Option('--consistency <level>', 'linearizable: the node first confirms it holds everything acknowledged').choices(['linearizable']))
    .option('--user <name>', 'an admin user (default: CONCLAVE_USER, else admin)')
    .option('--retry-ms <ms>', `how long to ask again while the node refuses for a moment (no master, its backups busy) before anything is sent; 0: never (default ${retryMsDefault})`)
    .addHelpText(
      'after',
      '\nThe password comes from CONCLAVE_PASSWORD (never a flag: a command line shows in ps, and a backup holds every\n' +
        'password hash). Every part is checked against the manifest while it arrives; the file appears under its name\n' +
        'only when complete, and an existing file is never overwritten.',
    )
    .action(async (options: BackupFlags) => {
      if (options.out === undefined) usage('conclave backup needs --out FILE (or: conclave backup verify FILE).');
      await exitWith(() => takeBackup(options as BackupFlags & { out: string }));
    });
  backup
    .command('verify')
    .description('Verify a backup file: every checksum, its state (data format, index, content digest, blobs) and its chain of bases.')
    .argument('<file>', 'the backup file')
    .option('--base-dir <dir>', 'where to look for the bases of an incremental backup (repeat for several; its own directory first)', collect, [])
    .option('--scratch-dir <dir>', 'where the state is unpacked while it is checked (default: the temporary directory)')
    .option('--json', 'print the report as JSON')
    .action(async (file: string, options: { baseDir: string[]; scratchDir?: string; json?: boolean }) => {
      await exitWith(async () => {
        const progress = new Progress(process.stderr, 'verified');
        const report = await verifyBackup(file, {
          baseDirs: options.baseDir,
          ...(options.scratchDir !== undefined ? { scratchDir: options.scratchDir } : {}),
          onProgress: (path, bytes, total) => progress.update(bytes, total, basename(path)),
        });
        progress.done();
        if (options.json === true) {
          const { manifest: _manifest, ...rest } = report;
          process.stdout.write(`${JSON.stringify(rest, null, 2)}\n`);
        } else {
          process.stdout.write(`${formatReport(report)}\nOK: every checksum, the state and ${report.chain.length === 0 ? 'the blobs' : 'the chain of bases'} hold.\n`);
        }
      });
    });
  program.addCommand(backup);

  program
    .command('restore')
    .description('Build a data directory from a backup (and its chain of bases): a new cluster of one, or a clone that joins the cluster.')
    .argument('<file>', 'the backup file')
    .requiredOption('-d, --data <dir>', 'the data directory to create (must be absent or empty unless --force)')
    .addOption(new Option('--as <mode>', 'new-cluster: a cluster of one under a new UUID (disaster recovery); clone: a new member of the backup\'s cluster').choices(['new-cluster', 'clone']).makeOptionMandatory())
    .option('--seed <host:port>', 'clone: the transport address of a member, for the start command printed')
    .option('--force', 'replace what the data directory holds (only once the backup verified)')
    .option('--cluster-secret-file <file>', 'the cluster secret to keep in the data directory (or CONCLAVE_CLUSTER_SECRET; new-cluster: generated when absent)')
    .option('--cluster-uuid <uuid>', 'clone: refuse a backup of any other cluster than this one (BACKUP_FOREIGN)')
    .option('--base-dir <dir>', 'where to look for the bases of an incremental backup (repeat for several)', collect, [])
    .addHelpText(
      'after',
      '\nNothing is written to --data unless the whole backup verified. A new cluster invalidates every bearer token\n' +
        'issued before the backup (its token key is rotated); a clone keeps the cluster UUID and needs its secret.',
    )
    .action(async (file: string, options: RestoreFlags) => {
      await exitWith(() => runRestore(file, options));
    });
}

/** The JSON of an error body, or undefined when it is not JSON. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function usage(message: string): never {
  process.stderr.write(`conclave: ${message}\n`);
  process.exit(2);
}

/** Runs a command: a coded failure prints `conclave: <message> (<CODE>)` and exits 1. */
async function exitWith(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (isConclaveError(err)) process.stderr.write(`conclave: ${err.message} (${err.code})\n`);
    else if (err instanceof StatusFailure) process.stderr.write(`conclave: ${err.message}\n`);
    else process.stderr.write(`conclave: ${(err as Error).message} (${(err as NodeJS.ErrnoException).code ?? 'INTERNAL'})\n`);
    process.exitCode = 1;
  }
}

// ------------------------------------------------------------------ conclave backup

async function takeBackup(options: BackupFlags & { out: string }): Promise<void> {
  const base = normaliseUrl(options.url);
  const out = resolve(options.out);
  if (existsSync(out)) throw new ConclaveError('INVALID_REQUEST', `${out} exists; choose another --out (a backup is never overwritten).`);
  let body: string | undefined;
  if (options.since !== undefined) {
    const previous = await readManifestOfFile(resolve(options.since));
    body = JSON.stringify({
      since: { id: previous.id, index: previous.index, createdAt: previous.createdAt, file: basename(options.since), blobsReferenced: previous.blobsReferenced },
    });
  }
  const user = options.user ?? process.env['CONCLAVE_USER'] ?? 'admin';
  const password = process.env['CONCLAVE_PASSWORD'];
  const headers: Record<string, string> = { accept: 'application/x-tar, application/json' };
  if (password !== undefined) headers['authorization'] = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const path = `/api/v1/admin/backup${options.consistency === 'linearizable' ? '?consistency=linearizable' : ''}`;
  const agent = new Agent({ headersTimeout: headersTimeoutMs, bodyTimeout: bodyIdleTimeoutMs });
  // A name nobody could have prepared (a symlink, a file readable by others in a shared directory), created here.
  const partial = `${out}.${randomBytes(6).toString('hex')}.partial`;
  let handle: SyncedFileWriter | null = null;
  const retryMs = options.retryMs === undefined ? retryMsDefault : Number(options.retryMs);
  if (!Number.isSafeInteger(retryMs) || retryMs < 0) usage(`--retry-ms must be a whole number of milliseconds, got ${JSON.stringify(options.retryMs)}`);
  const retryUntil = Date.now() + retryMs;
  try {
    let response: Awaited<ReturnType<typeof request>>;
    for (let attempt = 0; ; attempt++) {
      try {
        response = await request(`${base}${path}`, { dispatcher: agent, method: body === undefined ? 'GET' : 'POST', headers, ...(body !== undefined ? { body } : {}) });
      } catch (err) {
        throw new StatusFailure(describeFetchError(base, err));
      }
      // A refusal for the moment, before anything was sent: a failover under way, the node's backups busy.
      if (response.statusCode !== 503) break;
      const error = catalogueError(parseJson(await response.body.text().catch(() => '')));
      const pauseMs = Math.min(retryPauseMsMax, retryPauseMsMin * 2 ** attempt);
      if (error === null) throw new StatusFailure(`${base} answered HTTP ${response.statusCode} to ${path}; is --url a Conclave node of this version?`);
      // A node shutting down will not serve the backup, however long one waits: ask another.
      const retryable = errorCatalogue[error.code as ErrorCode]?.retryable === true && error.code !== 'SHUTTING_DOWN';
      if (!retryable || Date.now() + pauseMs > retryUntil) throw new StatusFailure(`${base} refused the backup: ${error.message} (${error.code})`);
      process.stderr.write(`conclave: ${base} refused the backup for now (${error.code}); asking again in ${pauseMs} ms\n`);
      await sleep(pauseMs);
    }
    if (response.statusCode !== 200) {
      const error = catalogueError(parseJson(await response.body.text().catch(() => '')));
      if (response.statusCode === 401) {
        throw new StatusFailure(`${base} answered 401${error === null ? '' : ` ${error.code}`}: ${password === undefined ? 'no credentials given' : 'wrong credentials'}; pass --user and CONCLAVE_PASSWORD.`);
      }
      if (error !== null) throw new StatusFailure(`${base} refused the backup: ${error.message} (${error.code})`);
      throw new StatusFailure(`${base} answered HTTP ${response.statusCode} to ${path}; is --url a Conclave node of this version?`);
    }
    handle = await SyncedFileWriter.create(partial, 0o600);
    const file = handle;
    const progress = new Progress(process.stderr, 'received');
    let total = 0;
    let writeFailure: unknown = null;
    async function* written(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of response.body) {
          await file.write(chunk as Buffer).catch((err: unknown) => {
            writeFailure = err;
            throw err;
          });
          yield chunk as Buffer;
        }
      } catch (err) {
        // This machine's disk failing (full, an I/O error) is not a stream cut by the server.
        if (isConclaveError(err) || err === writeFailure) throw err;
        throw new ConclaveError('BACKUP_TRUNCATED', `The backup stream from ${base} was cut (${(err as Error).message}); nothing was kept. Take the backup again.`);
      }
    }
    let manifest: BackupManifest | null = null;
    const read = await readArchive(written(), {
      onManifest: (m) => {
        manifest = m;
        total = archiveBytes(m);
      },
      sinkFor: () => discardSink,
      onProgress: (bytes) => progress.update(bytes, total),
    });
    progress.done();
    await handle.finish();
    handle = null;
    // link fails when `out` appeared meanwhile: a backup never replaces a file, whoever made it.
    try {
      await link(partial, out);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ConclaveError('INVALID_REQUEST', `${out} appeared while the backup was written; it was left alone, and the backup not kept.`);
      throw err;
    }
    await unlink(partial);
    fsyncDirectory(dirname(out));
    const m = manifest ?? read.manifest;
    process.stdout.write(
      `Wrote ${out}: backup ${m.id} of cluster ${m.cluster.name} at index ${m.index} (term ${m.term}), taken on ${m.source.nodeName};\n` +
        `  ${m.parts.length} part(s), ${formatBytes(read.bytes)}, every checksum verified` +
        `${m.base === null ? '' : `; incremental on ${m.base.file} (keep it beside this file)`}.\n`,
    );
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  } finally {
    // destroy, not close: a stream abandoned on a refusal would keep close() waiting for its end.
    await agent.destroy();
  }
}

/**
 * Progress on standard error: on a terminal one line rewritten in place (bytes, rate, estimate); otherwise a plain
 * line every few seconds, for logs.
 */
class Progress {
  private readonly started = Date.now();
  private lastAt = 0;
  private shown = false;
  private readonly tty: boolean;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly verb: string,
  ) {
    this.tty = stream.isTTY === true;
  }

  update(bytes: number, total: number, what = ''): void {
    const now = Date.now();
    if (now - this.lastAt < (this.tty ? progressTtyIntervalMs : progressLineIntervalMs)) return;
    this.lastAt = now;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const rate = bytes / seconds;
    const share = total > 0 ? ` of ${formatBytes(total)} (${Math.min(100, Math.floor((bytes / total) * 100))}%)` : '';
    const left = total > bytes && rate > 0 ? `, about ${formatDuration((total - bytes) / rate)} left` : '';
    const line = `${what === '' ? '' : `${what}: `}${formatBytes(bytes)}${share} ${this.verb}, ${formatBytes(rate)}/s${left}`;
    if (this.tty) this.stream.write(`\r\x1b[K${line}`);
    else this.stream.write(`${line}\n`);
    this.shown = true;
  }

  done(): void {
    if (this.tty && this.shown) this.stream.write('\r\x1b[K');
  }
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.ceil((seconds % 3600) / 60)} min`;
}

function formatReport(report: VerifyReport): string {
  const c = report.counts;
  const chain = report.chain.length === 0 ? 'none (a full backup)' : report.chain.map((f) => `${f.file} (index ${f.index}, ${formatBytes(f.bytes)})`).join('\n                ');
  return (
    `Backup:         ${report.file}\n` +
    `Id:             ${report.id}\n` +
    `Cluster:        ${report.cluster.name} (${report.cluster.uuid})\n` +
    `Taken:          ${report.createdAt} on ${report.source.nodeName}\n` +
    `Index:          ${report.index} (term ${report.term})\n` +
    `Digest:         ${report.digest}\n` +
    `Content:        ${c.nodes} node(s), ${c.users} user(s), ${c.binaryReferences} binary reference(s), ${c.blobs} blob(s)\n` +
    `Parts:          ${report.parts} (${formatBytes(report.bytes)})\n` +
    `Bases:          ${chain}`
  );
}

// ------------------------------------------------------------------ conclave restore

interface RestoreFlags {
  data: string;
  as: RestoreMode;
  seed?: string;
  force?: boolean;
  clusterSecretFile?: string;
  clusterUuid?: string;
  baseDir: string[];
}

async function runRestore(file: string, options: RestoreFlags): Promise<void> {
  let clusterSecret: string | undefined;
  let secretFrom = '';
  if (options.clusterSecretFile !== undefined) {
    const read = readClusterSecretFile(options.clusterSecretFile);
    if ('problem' in read) throw new ConclaveError('INVALID_REQUEST', `The cluster secret is unusable: ${read.problem}.`);
    clusterSecret = read.secret;
    secretFrom = options.clusterSecretFile;
  } else if ((process.env['CONCLAVE_CLUSTER_SECRET'] ?? '') !== '') {
    clusterSecret = process.env['CONCLAVE_CLUSTER_SECRET'];
    secretFrom = 'CONCLAVE_CLUSTER_SECRET';
  }
  const progress = new Progress(process.stderr, 'verified');
  const result = await restoreBackup({
    file,
    dataDir: options.data,
    as: options.as,
    force: options.force === true,
    baseDirs: options.baseDir,
    ...(clusterSecret !== undefined ? { clusterSecret } : {}),
    ...(options.clusterUuid !== undefined ? { clusterUuid: options.clusterUuid } : {}),
    onProgress: (path, bytes, total) => progress.update(bytes, total, basename(path)),
  });
  progress.done();
  process.stdout.write(formatRestored(result, options, secretFrom));
}

function formatRestored(result: RestoreResult, options: RestoreFlags, secretFrom: string): string {
  const r = result.report;
  const data = shellQuote(result.dataDir);
  const lines = [
    `Restored backup ${r.id} (cluster ${result.clusterName}, index ${r.index}, taken ${r.createdAt} on ${r.source.nodeName}) into ${result.dataDir}`,
    `  content: ${r.counts.nodes} node(s), ${r.counts.users} user(s), ${r.counts.blobs} blob(s); digest ${r.digest}` +
      (r.chain.length > 0 ? `; with ${r.chain.length} base(s): ${r.chain.map((c) => basename(c.file)).join(', ')}` : ''),
    `  new node id: ${result.nodeId}`,
  ];
  if (result.as === 'new-cluster') {
    lines.push(
      `  as a new cluster of one: cluster UUID ${result.clusterUuid} (was ${r.cluster.uuid}), term ${result.term}.`,
      '  Bearer tokens issued before are no longer valid (the token key was rotated); users log in again.',
      ...(result.droppedSettings.length > 0
        ? [
            `  Settings not carried over: ${result.droppedSettings.join(', ')}. Scheduled backups are off in the new cluster: set`,
            '  backup.schedule.* again (PUT /api/v1/cluster/settings), to a directory its nodes allow (backup.directoriesAllowed).',
          ]
        : []),
      result.secret?.generated === true
        ? `  A cluster secret was generated in ${result.secret.file} (mode 0600): nodes that join need it (--cluster-secret-file).`
        : `  The cluster secret (from ${secretFrom}) is kept in ${result.secret?.file ?? 'the data directory'} (mode 0600).`,
      '',
      'Start it with:',
      `  conclave start --data ${data} --cluster-name ${shellQuote(result.clusterName)}`,
      '',
      'Then start the other nodes with empty data directories, --seed naming this node\'s transport address, and the same secret.',
    );
  } else {
    const seed = options.seed ?? 'HOST:PORT';
    lines.push(
      `  as a clone of cluster ${result.clusterName} (${result.clusterUuid}): it joins and catches up from index ${r.index}`,
      '  (entries from the master\'s journal, or a snapshot when the master no longer holds them).',
      result.secret !== null
        ? `  The cluster secret (from ${secretFrom}) is kept in ${result.secret.file} (mode 0600).`
        : '  No cluster secret was given: start it with the cluster\'s secret (CONCLAVE_CLUSTER_SECRET or --cluster-secret-file), or it is refused.',
      '',
      'Start it with:',
      `  conclave start --data ${data} --cluster-name ${shellQuote(result.clusterName)} --seed ${shellQuote(seed)} --name <a name no member has>` +
        (result.secret === null ? ' --cluster-secret-file <the cluster\'s secret>' : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}

function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
