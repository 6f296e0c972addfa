import { decode, encode } from '@msgpack/msgpack';
import { crc32 } from 'node:zlib';

import type { Command } from '../content/commands.js';
import { invariant } from '../errors/catalogue.js';
import type { Db } from './database.js';

export interface JournalEntry {
  readonly index: number;
  readonly term: number;
  readonly command: Command;
}

// Plain MessagePack maps, no extension types: entries must decode the same in every later version and on every
// node. (@msgpack/msgpack rather than msgpackr: msgpackr's optional native addon has per-platform packages that
// this machine's registry does not serve, which breaks `npm ci` against the lock file.)
export function encodeCommand(command: Command): Buffer {
  const bytes = encode(command, { ignoreUndefined: true });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeCommand(payload: Buffer): Command {
  return decode(payload) as Command;
}

/** CRC-32 over index, term and payload, so a misplaced or torn entry is caught as well as a flipped bit. */
export function entryChecksum(index: number, term: number, payload: Buffer): number {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(BigInt(index), 0);
  header.writeBigUInt64BE(BigInt(term), 8);
  return crc32(payload, crc32(header));
}

/** The journal table. Appends run inside the caller's transaction; nothing here commits on its own. */
export class Journal {
  private readonly insert;
  private readonly selectFrom;
  private readonly selectLast;

  constructor(private readonly db: Db) {
    this.insert = db.prepare('INSERT INTO journal(idx, term, payload, checksum) VALUES (?, ?, ?, ?)');
    this.selectFrom = db.prepare('SELECT idx, term, payload, checksum FROM journal WHERE idx >= ? ORDER BY idx LIMIT ?');
    this.selectLast = db.prepare('SELECT idx, term FROM journal ORDER BY idx DESC LIMIT 1');
  }

  lastIndex(): number {
    const row = this.selectLast.get() as { idx: number } | undefined;
    return row?.idx ?? 0;
  }

  lastTerm(): number {
    const row = this.selectLast.get() as { term: number } | undefined;
    return row?.term ?? 0;
  }

  append(index: number, term: number, payload: Buffer): void {
    this.insert.run(index, term, payload, entryChecksum(index, term, payload));
  }

  /** Reads up to `countMax` entries from `fromIndex`, verifying each checksum. */
  read(fromIndex: number, countMax: number): JournalEntry[] {
    const rows = this.selectFrom.all(fromIndex, countMax) as Array<{
      idx: number;
      term: number;
      payload: Buffer;
      checksum: number;
    }>;
    return rows.map((row, i) => {
      invariant(row.idx === fromIndex + i, `journal gap at index ${fromIndex + i}`);
      invariant(
        entryChecksum(row.idx, row.term, row.payload) === row.checksum,
        `journal entry ${row.idx} fails its checksum: the data file is corrupt`,
      );
      return { index: row.idx, term: row.term, command: decodeCommand(row.payload) };
    });
  }
}
