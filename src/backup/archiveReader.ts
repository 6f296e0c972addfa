import { createHash } from 'node:crypto';

import { ConclaveError } from '../errors/catalogue.js';
import { manifestEntryName, parseManifest, type BackupManifest, type BackupPart } from './manifest.js';
import { decodeTarHeader, tarBlockBytes } from './tarFormat.js';

/**
 * Reads a backup archive (layout: manifest.ts; tar subset: tarFormat.ts) as a stream, one chunk at a time: the
 * manifest first, then exactly the parts it lists, in its order, each handed to a sink while its size and SHA-256
 * are checked. The next chunk is pulled only once the sink has taken the previous one, so a slow disk slows the
 * source instead of filling memory.
 *
 * What can go wrong has one of three codes, whatever the bytes: BACKUP_TRUNCATED when the bytes end before the
 * archive does (before the manifest, mid-part, before the last part, or before the end blocks: a transfer or copy
 * cut short), BACKUP_FORMAT_NEWER from the manifest, BACKUP_CORRUPT for everything else — a header, a part that is
 * not the one the manifest lists next, a checksum, padding or end blocks that are not zero, anything after the end.
 * A sink sees a part's bytes before they are known good: a part counts only once `finish` is called, after its
 * size and SHA-256 matched; on any failure the reader calls `abort` on the sink of the part under way.
 */

/**
 * The largest manifest read (it is held in memory to be parsed). 256 MiB holds the names of about four million
 * blobs; a bigger one is damage, not a manifest.
 */
export const manifestBytesMax = 256 * 1024 * 1024;

/** Where one part's bytes go. */
export interface PartSink {
  write(chunk: Buffer): Promise<void> | void;
  /** The part is complete and matched its size and SHA-256. */
  finish(): Promise<void> | void;
  /** The read failed while this part was under way (its bytes are not to be trusted). */
  abort(): Promise<void> | void;
}

export interface ArchiveReadOptions {
  /** Called once the manifest is parsed, before any part is read: may refuse the backup by throwing. */
  readonly onManifest?: (manifest: BackupManifest) => Promise<void> | void;
  /** The sink of each part, asked when the part's header has been read. */
  readonly sinkFor: (part: BackupPart, position: number) => Promise<PartSink> | PartSink;
  /** Called after each chunk with the archive bytes read so far. */
  readonly onProgress?: (bytesRead: number) => void;
  readonly manifestBytesMax?: number;
  readonly signal?: AbortSignal;
}

export interface ArchiveRead {
  readonly manifest: BackupManifest;
  /** Bytes of the whole archive. */
  readonly bytes: number;
}

/** A sink that keeps nothing: the reader's own checks are all that is wanted. */
export const discardSink: PartSink = { write: () => undefined, finish: () => undefined, abort: () => undefined };

/** Reads the whole archive from `source`; rejects with a ConclaveError (codes above) or the sinks' own errors. */
export async function readArchive(source: AsyncIterable<Uint8Array>, options: ArchiveReadOptions): Promise<ArchiveRead> {
  const reader = new ArchiveStreamReader(options);
  try {
    for await (const chunk of source) {
      options.signal?.throwIfAborted();
      await reader.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    return reader.end();
  } catch (err) {
    await reader.abortPart();
    throw err;
  }
}

/** Reads only the manifest (the first entry) of an archive: what a chain or `--since` needs of an older backup. */
export async function readManifest(source: AsyncIterable<Uint8Array>, limit = manifestBytesMax): Promise<BackupManifest> {
  const found = new Error('manifest read');
  let manifest: BackupManifest | undefined;
  try {
    await readArchive(source, {
      manifestBytesMax: limit,
      onManifest: (m) => {
        manifest = m;
        throw found;
      },
      sinkFor: () => discardSink,
    });
  } catch (err) {
    if (err !== found) throw err;
  }
  if (manifest === undefined) throw truncated('it ends before its manifest does');
  return manifest;
}

type Phase =
  | { kind: 'header' }
  | { kind: 'manifest'; size: number; chunks: Buffer[]; have: number }
  | { kind: 'part'; part: BackupPart; sink: PartSink; left: number; hash: ReturnType<typeof createHash> }
  | { kind: 'padding'; left: number }
  | { kind: 'end'; zeros: number };

class ArchiveStreamReader {
  private phase: Phase = { kind: 'header' };
  private readonly header = Buffer.alloc(tarBlockBytes);
  private headerHave = 0;
  private manifest: BackupManifest | null = null;
  /** Parts read whole so far. */
  private partsDone = 0;
  private bytes = 0;

  constructor(private readonly options: ArchiveReadOptions) {}

  async push(chunk: Buffer): Promise<void> {
    this.bytes += chunk.length;
    let offset = 0;
    while (offset < chunk.length) offset += await this.take(chunk, offset);
    this.options.onProgress?.(this.bytes);
  }

  /** Consumes bytes of `chunk` from `offset` for the current phase; returns how many. */
  private async take(chunk: Buffer, offset: number): Promise<number> {
    const phase = this.phase;
    const available = chunk.length - offset;
    switch (phase.kind) {
      case 'header': {
        const n = Math.min(available, tarBlockBytes - this.headerHave);
        chunk.copy(this.header, this.headerHave, offset, offset + n);
        this.headerHave += n;
        if (this.headerHave === tarBlockBytes) {
          this.headerHave = 0;
          await this.onHeader();
        }
        return n;
      }
      case 'manifest': {
        const n = Math.min(available, phase.size - phase.have);
        phase.chunks.push(Buffer.from(chunk.subarray(offset, offset + n)));
        phase.have += n;
        if (phase.have === phase.size) await this.onManifestRead(Buffer.concat(phase.chunks), phase.size);
        return n;
      }
      case 'part': {
        const n = Math.min(available, phase.left);
        const piece = chunk.subarray(offset, offset + n);
        phase.hash.update(piece);
        phase.left -= n;
        await phase.sink.write(piece);
        if (phase.left === 0) await this.onPartRead(phase);
        return n;
      }
      case 'padding': {
        const n = Math.min(available, phase.left);
        if (!isZero(chunk, offset, offset + n)) throw corrupt('the padding after an entry is not zero');
        phase.left -= n;
        if (phase.left === 0) this.phase = { kind: 'header' };
        return n;
      }
      case 'end': {
        // The two zero blocks, then nothing but zeros (a tar tool may pad to a whole record).
        if (!isZero(chunk, offset, chunk.length)) throw corrupt('it holds data after its last part');
        phase.zeros += available;
        return available;
      }
    }
  }

  private async onHeader(): Promise<void> {
    const header = decodeTarHeader(this.header);
    const manifest = this.manifest;
    if (manifest === null) {
      if (header === null) throw corrupt(`it does not start with ${manifestEntryName}`);
      if (header.name !== manifestEntryName) throw corrupt(`its first entry is ${header.name}, not ${manifestEntryName}`);
      const limit = this.options.manifestBytesMax ?? manifestBytesMax;
      if (header.size > limit) throw corrupt(`its manifest is ${header.size} bytes, more than the ${limit} a manifest may have`);
      if (header.size === 0) throw corrupt('its manifest is empty');
      this.phase = { kind: 'manifest', size: header.size, chunks: [], have: 0 };
      return;
    }
    const expected = manifest.parts[this.partsDone];
    if (header === null) {
      if (expected !== undefined) throw truncated(`it ends after ${this.partsDone} of the ${manifest.parts.length} parts its manifest lists (${expected.name} is missing)`);
      // The first of the two end blocks; the second is checked in the 'end' phase.
      this.phase = { kind: 'end', zeros: tarBlockBytes };
      return;
    }
    if (expected === undefined) throw corrupt(`it holds an entry ${header.name} after the last part its manifest lists`);
    if (header.name !== expected.name) throw corrupt(`its entry ${this.partsDone + 1} is ${header.name}, where the manifest lists ${expected.name}`);
    if (header.size !== expected.bytes) throw corrupt(`its part ${expected.name} is ${header.size} bytes, where the manifest says ${expected.bytes}`);
    const sink = await this.options.sinkFor(expected, this.partsDone);
    const phase: Phase & { kind: 'part' } = { kind: 'part', part: expected, sink, left: expected.bytes, hash: createHash('sha256') };
    this.phase = phase;
    if (expected.bytes === 0) await this.onPartRead(phase);
  }

  private async onManifestRead(bytes: Buffer, size: number): Promise<void> {
    const manifest = parseManifest(bytes);
    this.manifest = manifest;
    this.phase = paddingOf(size) === 0 ? { kind: 'header' } : { kind: 'padding', left: paddingOf(size) };
    await this.options.onManifest?.(manifest);
  }

  private async onPartRead(phase: Phase & { kind: 'part' }): Promise<void> {
    const sha256 = phase.hash.digest('hex');
    if (sha256 !== phase.part.sha256) {
      throw new ConclaveError(
        'BACKUP_CORRUPT',
        `The backup is not valid: its part ${phase.part.name} has SHA-256 ${sha256}, not the ${phase.part.sha256} its manifest lists; the file is damaged. Use another copy of it.`,
        { part: phase.part.name },
      );
    }
    this.partsDone++;
    // No sink to abort from here on: the part is complete.
    this.phase = paddingOf(phase.part.bytes) === 0 ? { kind: 'header' } : { kind: 'padding', left: paddingOf(phase.part.bytes) };
    await phase.sink.finish();
  }

  end(): ArchiveRead {
    const phase = this.phase;
    const manifest = this.manifest;
    if (manifest === null) throw truncated(this.bytes === 0 ? 'it is empty' : 'it ends before its manifest does');
    if (phase.kind === 'end' && phase.zeros >= 2 * tarBlockBytes) return { manifest, bytes: this.bytes };
    if (phase.kind === 'part') throw truncated(`it ends inside its part ${phase.part.name} (${phase.part.bytes - phase.left} of ${phase.part.bytes} bytes)`);
    if (this.partsDone < manifest.parts.length) {
      throw truncated(`it ends after ${this.partsDone} of the ${manifest.parts.length} parts its manifest lists (${manifest.parts[this.partsDone]!.name} is missing)`);
    }
    throw truncated('it ends before the end-of-archive blocks');
  }

  async abortPart(): Promise<void> {
    const phase = this.phase;
    if (phase.kind !== 'part') return;
    this.phase = { kind: 'header' };
    await phase.sink.abort();
  }
}

function paddingOf(size: number): number {
  const rest = size % tarBlockBytes;
  return rest === 0 ? 0 : tarBlockBytes - rest;
}

function isZero(buffer: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buffer[i] !== 0) return false;
  return true;
}

function corrupt(message: string): ConclaveError {
  return new ConclaveError('BACKUP_CORRUPT', `The backup is not valid: ${message}. The file is damaged or not a Conclave backup; use another copy of it.`);
}

function truncated(message: string): ConclaveError {
  return new ConclaveError('BACKUP_TRUNCATED', `The backup is incomplete: ${message}. The transfer or copy was cut short; take or copy it again.`);
}
