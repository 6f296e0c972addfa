import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import { ConclaveError } from '../errors/catalogue.js';
import type { BackupPacer } from './backupPacer.js';
import { manifestEntryName, type BackupManifest } from './manifest.js';
import { encodeTarHeader, tarBlockBytes, tarEnd, tarPadding } from './tarFormat.js';

/** One part to write: its bytes come from `open()`, read only when the archive reaches it. */
export interface ArchivePartSource {
  readonly name: string;
  readonly bytes: number;
  readonly sha256: string;
  open(): Promise<AsyncIterable<Buffer>> | AsyncIterable<Buffer>;
}

/**
 * The archive of a backup as a stream: the manifest, then each part in the manifest's order (see manifest.ts).
 * Each part's bytes are counted and hashed as they pass; a part that is not exactly what the manifest says (a blob
 * file damaged on this node's disk, a file that changed) fails the stream, so the reader sees an archive cut short
 * (BACKUP_TRUNCATED) — never a complete-looking archive with a wrong part. Memory: one chunk at a time. With a
 * pacer, the parts' bytes go out no faster than it allows (backupPacer.ts).
 */
export function archiveStream(manifest: BackupManifest, parts: readonly ArchivePartSource[], signal?: AbortSignal, pacer?: BackupPacer): Readable {
  return Readable.from(archiveChunks(manifest, parts, signal, pacer), { objectMode: false, highWaterMark: 1024 * 1024 });
}

async function* archiveChunks(manifest: BackupManifest, parts: readonly ArchivePartSource[], signal?: AbortSignal, pacer?: BackupPacer): AsyncGenerator<Buffer> {
  const mtimeSeconds = Math.floor(Date.parse(manifest.createdAt) / 1000);
  const manifestBytes = encodeManifest(manifest);
  yield encodeTarHeader({ name: manifestEntryName, size: manifestBytes.length, mtimeSeconds });
  yield manifestBytes;
  yield tarPadding(manifestBytes.length);
  for (const [i, part] of parts.entries()) {
    const listed = manifest.parts[i];
    if (listed?.name !== part.name || listed.bytes !== part.bytes || listed.sha256 !== part.sha256) {
      throw new ConclaveError('INTERNAL', `backup part ${i} (${part.name}) is not the one the manifest lists`);
    }
    signal?.throwIfAborted();
    yield encodeTarHeader({ name: part.name, size: part.bytes, mtimeSeconds });
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of await part.open()) {
      // A part may be gigabytes (the state of a large repository): a stop must not wait for its end.
      signal?.throwIfAborted();
      bytes += chunk.length;
      if (bytes > part.bytes) break;
      hash.update(chunk);
      yield chunk;
      await pacer?.took(chunk.length, signal);
    }
    const sha256 = hash.digest('hex');
    if (bytes !== part.bytes || sha256 !== part.sha256) {
      throw new ConclaveError(
        'BACKUP_CORRUPT',
        `The part ${part.name} on this node is not what it should be (${bytes} bytes, SHA-256 ${sha256}; expected ${part.bytes} bytes, ${part.sha256}): the file is damaged on this node's disk. Take the backup from another node, and check this node's disk.`,
        { part: part.name },
      );
    }
    yield tarPadding(part.bytes);
  }
  if (parts.length !== manifest.parts.length) throw new ConclaveError('INTERNAL', 'the backup has fewer parts than its manifest lists');
  signal?.throwIfAborted();
  yield tarEnd();
}

function encodeManifest(manifest: BackupManifest): Buffer {
  return Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`, 'utf8');
}

/** The size in bytes of the archive archiveStream writes for this manifest (for Content-Length and progress). */
export function archiveBytes(manifest: BackupManifest): number {
  const entry = (size: number) => tarBlockBytes + Math.ceil(size / tarBlockBytes) * tarBlockBytes;
  let total = entry(encodeManifest(manifest).length) + tarEnd().length;
  for (const part of manifest.parts) total += entry(part.bytes);
  return total;
}
