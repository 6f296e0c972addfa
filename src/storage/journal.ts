import { encode } from '@msgpack/msgpack';
import { crc32 } from 'node:zlib';

import type { CoordinatorRestoredState } from '../core/clusterCoordinator.js';
import type { Entry, EntryPayload, HardState, Snapshot } from '../core/types.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';
import { decodePlain } from '../transport/plainDecoder.js';
import { getMeta, type Db } from './database.js';

// Plain MessagePack maps, no extension types: entries must decode the same in every later version and on every
// node. (@msgpack/msgpack rather than msgpackr: msgpackr's optional native addon has per-platform packages that
// this machine's registry does not serve, which breaks `npm ci` against the lock file.)
export function encodePayload(payload: EntryPayload): Buffer {
  const bytes = encode(payload, { ignoreUndefined: true });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Every map key decodes as plain data: an entry journaled with a key "__proto__" loads (plainDecoder.ts). */
export function decodePayload(bytes: Buffer): EntryPayload {
  return decodePlain(bytes) as EntryPayload;
}

/**
 * The encoding of each payload, kept beside the payload object so that it is encoded once, where it is made: a
 * proposal is encoded once to bound the write queue, an append's payloads arrive encoded, and the journal, the byte
 * bounds of appends and every follower's append reuse those bytes (re-encoding a 16 KiB document took a returning
 * replica more time than storing it). Kept only until the entry is applied here (forgetPayloadBytes): the core
 * keeps applied entries in memory for lagging followers, and holding their bytes too would double that memory (and
 * keep every received frame alive); an applied entry sent later is encoded for that send. A payload object is never
 * changed once made (entries are immutable), so its bytes stay its encoding.
 */
const encodedPayloads = new WeakMap<object, Buffer>();
/** Bytes of proposed commands, by command: the core wraps the command in a payload object of its own. */
const encodedCommands = new WeakMap<object, Buffer>();

/** The payload's encoding: the bytes it arrived as or was first encoded to, else encoded now (and kept). */
export function payloadBytes(payload: EntryPayload): Buffer {
  let bytes = encodedPayloads.get(payload);
  if (bytes === undefined) {
    if (payload.kind === 'command' && typeof payload.data === 'object' && payload.data !== null) bytes = encodedCommands.get(payload.data);
    bytes ??= encodePayload(payload);
    encodedPayloads.set(payload, bytes);
  }
  return bytes;
}

/** Records that `payload` was decoded from `bytes` (exactly one MessagePack value): the journal stores those. */
export function keepPayloadBytes(payload: EntryPayload, bytes: Buffer): void {
  encodedPayloads.set(payload, bytes);
}

/** Drops the bytes kept for `payload` (see encodedPayloads). */
export function forgetPayloadBytes(payload: EntryPayload): void {
  encodedPayloads.delete(payload);
  if (payload.kind === 'command' && typeof payload.data === 'object' && payload.data !== null) encodedCommands.delete(payload.data);
}

/**
 * Encodes a command about to be proposed as the payload the core will wrap it in ({ kind: 'command', data }), and
 * keeps the bytes for that payload: returns their length.
 */
export function proposedCommandBytes(command: object): number {
  const payload = { kind: 'command', data: command } as const;
  let bytes: Buffer;
  try {
    bytes = encodePayload(payload);
  } catch (err) {
    throw new ConclaveError('COMMAND_NOT_REPLICABLE', `The write cannot be encoded for the journal (${(err as Error).message}); nothing was stored.`);
  }
  // What every other node will apply is what it decodes from these bytes, while this node applies `command` itself:
  // if the two differ (a lone surrogate that the encoder replaces, a value that does not decode), the nodes would
  // store different data or never apply the entry at all. Refused here, before anything is journaled.
  const difference = roundTripDifference(payload, bytes);
  if (difference !== null) {
    throw new ConclaveError('COMMAND_NOT_REPLICABLE', `The write would not reach the other nodes exactly as sent (${difference}); nothing was stored.`);
  }
  encodedCommands.set(command, bytes);
  return bytes.length;
}

/** Where decoding `bytes` does not give back `value`, or null when it does. */
export function roundTripDifference(value: unknown, bytes: Uint8Array): string | null {
  let decoded: unknown;
  try {
    decoded = decodePlain(bytes);
  } catch (err) {
    return `its encoding does not decode: ${(err as Error).message}`;
  }
  return firstDifference(value, decoded, '');
}

/**
 * Compares as the journal's encoding sees values: a key holding undefined is absent (ignoreUndefined), -0 is 0
 * (MessagePack has one integer zero; JSON writes both as 0), key order counts (documents are stored as written).
 * Iterative: a value nests as deep as its bytes allow.
 */
function firstDifference(expected: unknown, actual: unknown, at: string): string | null {
  const stack: Array<[unknown, unknown, string]> = [[expected, actual, at]];
  while (stack.length > 0) {
    const [a, b, path] = stack.pop()!;
    const where = path === '' ? 'the command' : path;
    if (a === b) continue;
    if (a instanceof Uint8Array && b instanceof Uint8Array) {
      if (Buffer.compare(a, b) !== 0) return `bytes differ at ${where}`;
      continue;
    }
    if (a instanceof Date && b instanceof Date) {
      if (a.getTime() !== b.getTime()) return `a date differs at ${where}`;
      continue;
    }
    if (Array.isArray(a) && Array.isArray(b)) {
      if (a.length !== b.length) return `an array's length differs at ${where}`;
      for (let i = 0; i < a.length; i++) stack.push([a[i], b[i], `${path}/${i}`]);
      continue;
    }
    if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null && !Array.isArray(a) && !Array.isArray(b)) {
      const aKeys = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
      const bKeys = Object.keys(b);
      if (aKeys.length !== bKeys.length || aKeys.some((k, i) => k !== bKeys[i])) return `the names differ at ${where}`;
      for (const k of aKeys) stack.push([(a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}/${k}`]);
      continue;
    }
    return `a value differs at ${where}`;
  }
  return null;
}

/** CRC-32 over index, term and payload, so a misplaced or torn entry is caught as well as a flipped bit. */
export function entryChecksum(index: number, term: number, payload: Buffer): number {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(BigInt(index), 0);
  header.writeBigUInt64BE(BigInt(term), 8);
  return crc32(payload, crc32(header));
}

/** The meta key of probeWritable's scratch row. */
const storageProbeKey = 'storage_probe';

/**
 * The durable side of the coordination core: the journal table, the hard state (term, vote, commit index) and
 * the bootstrap view, in the node's SQLite database. Writes run inside the caller's transaction — the runtime
 * writes a Ready in one transaction, fsynced at commit (synchronous=FULL) before it sends anything, unless the Ready
 * only applies entries (src/node/readyLoop.ts, readyNeedsSync).
 */
export class JournalStore {
  private readonly insert;
  private readonly truncate;
  private readonly selectFrom;
  private readonly selectLast;
  private readonly countFromIndex;
  private readonly upsertMeta;
  private readonly truncateThrough;
  private readonly truncateAll;
  private readonly deleteMeta;

  constructor(private readonly db: Db) {
    // Prepared once: the hard state is written with nearly every Ready.
    this.upsertMeta = db.prepare('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
    this.insert = db.prepare('INSERT INTO journal(idx, term, payload, checksum) VALUES (?, ?, ?, ?)');
    this.truncate = db.prepare('DELETE FROM journal WHERE idx >= ?');
    this.selectFrom = db.prepare('SELECT idx, term, payload, checksum FROM journal WHERE idx >= ? ORDER BY idx LIMIT ?');
    this.selectLast = db.prepare('SELECT idx FROM journal ORDER BY idx DESC LIMIT 1');
    this.countFromIndex = db.prepare('SELECT COUNT(*) AS n FROM journal WHERE idx >= ?');
    this.truncateThrough = db.prepare('DELETE FROM journal WHERE idx <= ?');
    this.truncateAll = db.prepare('DELETE FROM journal');
    this.deleteMeta = db.prepare('DELETE FROM meta WHERE key = ?');
  }

  /** The last index of the journal, or of the snapshot when the journal after it is empty. */
  lastIndex(): number {
    return (this.selectLast.get() as { idx: number } | undefined)?.idx ?? this.snapshot()?.index ?? 0;
  }

  /** Replaces everything from `entries[0].index` on with `entries` (step 1 of the Ready contract). */
  write(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    this.truncate.run(entries[0]!.index);
    for (const entry of entries) {
      const payload = payloadBytes(entry.payload);
      this.insert.run(entry.index, entry.term, payload, entryChecksum(entry.index, entry.term, payload));
    }
  }

  /** How many entries from `fromIndex` on a write would replace (0 when it only appends). */
  countFrom(fromIndex: number): number {
    return (this.countFromIndex.get(fromIndex) as { n: number }).n;
  }

  /** Reads up to `countMax` entries from `fromIndex`, verifying each checksum. */
  read(fromIndex: number, countMax: number): Entry[] {
    const rows = this.selectFrom.all(fromIndex, countMax) as Array<{ idx: number; term: number; payload: Buffer; checksum: number }>;
    return rows.map((row, i) => {
      invariant(row.idx === fromIndex + i, `journal gap at index ${fromIndex + i}`);
      invariant(entryChecksum(row.idx, row.term, row.payload) === row.checksum, `journal entry ${row.idx} fails its checksum: the data file is corrupt`);
      return { index: row.idx, term: row.term, payload: decodePayload(row.payload) };
    });
  }

  saveHardState(hardState: HardState): void {
    this.upsertMeta.run('hard_state', JSON.stringify(hardState));
  }

  /**
   * Whether the disk takes writes again, after a Ready failed to persist: stores `bytes` under a scratch key (a
   * transaction of its own, committed, so SQLite must find room for it) and removes it. False on any failure.
   */
  probeWritable(bytes: number): boolean {
    try {
      this.upsertMeta.run(storageProbeKey, Buffer.alloc(bytes));
    } catch {
      return false;
    }
    try {
      this.deleteMeta.run(storageProbeKey);
      return true;
    } catch {
      // The disk failed again at once: not writable yet (the next probe overwrites the row and removes it).
      return false;
    }
  }

  saveBootstrapView(view: readonly string[]): void {
    this.upsertMeta.run('bootstrap_view', JSON.stringify(view));
  }

  /**
   * Compaction: the snapshot replaces the journal up to its index (runs inside the caller's transaction). The
   * snapshot is stored whole — index, term, configuration and the data naming its file — so a restart restores it.
   */
  compact(snapshot: Snapshot): void {
    this.truncateThrough.run(snapshot.index);
    this.upsertMeta.run('snapshot', JSON.stringify(snapshot));
  }

  /** A snapshot install (step 1 of the Ready contract): the whole journal goes; entries kept come again. */
  install(snapshot: Snapshot): void {
    this.truncateAll.run();
    this.upsertMeta.run('snapshot', JSON.stringify(snapshot));
  }

  /** The latest snapshot made durable, if the journal was ever compacted. */
  snapshot(): Snapshot | undefined {
    const text = getMeta<string>(this.db, 'snapshot');
    return text === undefined ? undefined : (JSON.parse(text) as Snapshot);
  }

  /** Everything the coordinator restarts from: the snapshot, if any, and the journal after it. */
  restoredState(appliedIndex: number): CoordinatorRestoredState {
    const hardStateText = getMeta<string>(this.db, 'hard_state');
    const viewText = getMeta<string>(this.db, 'bootstrap_view');
    const snapshot = this.snapshot();
    const entries: Entry[] = [];
    for (let from = (snapshot?.index ?? 0) + 1; ; ) {
      const chunk = this.read(from, 10_000);
      entries.push(...chunk);
      if (chunk.length < 10_000) break;
      from += chunk.length;
    }
    return {
      hardState: hardStateText === undefined ? { term: 0, votedFor: null, commitIndex: 0 } : (JSON.parse(hardStateText) as HardState),
      ...(snapshot !== undefined ? { snapshot } : {}),
      entries,
      appliedIndex,
      ...(viewText !== undefined ? { bootstrapView: JSON.parse(viewText) as string[] } : {}),
    };
  }
}
