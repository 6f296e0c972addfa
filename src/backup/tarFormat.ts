import { ConclaveError, invariant } from '../errors/catalogue.js';

/**
 * The few parts of the POSIX ustar format a backup needs: regular files only, names we choose (at most 100 bytes:
 * `manifest.json`, `state.db`, `blobs/<sha256>`), so `tar tvf` lists a backup and `tar xf` unpacks it. Written by
 * hand rather than with a tar library: a backup reader must refuse everything outside this narrow subset with a
 * stable code (links, long names, pax headers, devices), which a general reader would accept, and the subset is a
 * page of code.
 *
 * Sizes of 8 GiB and more use the base-256 form GNU tar, bsdtar and Go's archive/tar read (a state.db can be that
 * large); anything at most 2^53 - 1 bytes.
 */
export const tarBlockBytes = 512;
export const tarNameBytesMax = 100;
/** Largest size the 11 octal digits of a ustar header hold. */
const octalSizeMax = 8 ** 11 - 1;

export interface TarEntryHeader {
  readonly name: string;
  readonly size: number;
  /** Seconds since the epoch. */
  readonly mtimeSeconds: number;
}

/** The 512-byte header of one regular file (mode 0600, owner 0). */
export function encodeTarHeader(header: TarEntryHeader): Buffer {
  const name = Buffer.from(header.name, 'utf8');
  invariant(name.length > 0 && name.length <= tarNameBytesMax && !header.name.includes('\0'), `tar entry name ${header.name} does not fit a ustar header`);
  invariant(Number.isSafeInteger(header.size) && header.size >= 0, `tar entry size ${header.size}`);
  const block = Buffer.alloc(tarBlockBytes);
  name.copy(block, 0);
  writeOctal(block, 100, 8, 0o600); // mode
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  writeSize(block, header.size);
  writeOctal(block, 136, 12, Math.max(0, Math.floor(header.mtimeSeconds)));
  block.fill(0x20, 148, 156); // the checksum field counts as spaces while summing
  block.write('0', 156, 'latin1'); // regular file
  block.write('ustar\0', 257, 'latin1');
  block.write('00', 263, 'latin1');
  writeOctal(block, 148, 8, tarChecksum(block));
  return block;
}

/** Zero bytes that fill an entry of `size` bytes up to a whole block. */
export function tarPadding(size: number): Buffer {
  const rest = size % tarBlockBytes;
  return Buffer.alloc(rest === 0 ? 0 : tarBlockBytes - rest);
}

/** Two zero blocks: the end of an archive. */
export function tarEnd(): Buffer {
  return Buffer.alloc(2 * tarBlockBytes);
}

/** The ustar checksum: the sum of the header's bytes, the checksum field taken as eight spaces. */
export function tarChecksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < tarBlockBytes; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum;
}

/**
 * Decodes one header block. Null for a zero block (the end of the archive); a coded error for anything that is not
 * a regular file of this subset.
 */
export function decodeTarHeader(block: Buffer): TarEntryHeader | null {
  invariant(block.length === tarBlockBytes, 'a tar header is one block');
  if (block.every((b) => b === 0)) return null;
  const stored = parseOctal(block, 148, 8);
  if (stored === null || stored !== tarChecksum(block)) throw corrupt('a tar header fails its checksum');
  if (block.toString('latin1', 257, 263) !== 'ustar\0') throw corrupt('a tar header is not in the ustar format');
  const type = block[156];
  if (type !== 0x30 && type !== 0) throw corrupt(`a tar entry is not a regular file (type ${JSON.stringify(String.fromCharCode(type ?? 0))})`);
  if (block[345] !== 0) throw corrupt('a tar entry uses a name prefix (names longer than 100 bytes are never in a backup)');
  const end = block.indexOf(0, 0);
  const nameBytes = block.subarray(0, end === -1 || end > tarNameBytesMax ? tarNameBytesMax : end);
  const name = nameBytes.toString('utf8');
  if (name.length === 0 || Buffer.byteLength(name, 'utf8') !== nameBytes.length) throw corrupt('a tar entry name is empty or not UTF-8');
  const size = parseSize(block);
  const mtimeSeconds = parseOctal(block, 136, 12);
  if (mtimeSeconds === null) throw corrupt(`the tar entry ${name} has a malformed modification time`);
  return { name, size, mtimeSeconds };
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  const digits = value.toString(8).padStart(length - 1, '0');
  invariant(digits.length === length - 1, `${value} does not fit ${length - 1} octal digits`);
  block.write(`${digits}\0`, offset, length, 'latin1');
}

function writeSize(block: Buffer, size: number): void {
  if (size <= octalSizeMax) return writeOctal(block, 124, 12, size);
  // Base-256: the first byte's high bit set, the value big-endian in the rest of the 12 bytes.
  block.fill(0, 124, 136);
  block[124] = 0x80;
  let rest = BigInt(size);
  for (let i = 135; i > 124 && rest > 0n; i--) {
    block[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
}

function parseSize(block: Buffer): number {
  if ((block[124]! & 0x80) === 0) {
    const size = parseOctal(block, 124, 12);
    if (size === null) throw corrupt('a tar entry has a malformed size');
    return size;
  }
  if (block[124] !== 0x80) throw corrupt('a tar entry has a negative or oversized size');
  let value = 0n;
  for (let i = 125; i < 136; i++) value = (value << 8n) | BigInt(block[i]!);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('a tar entry is larger than any backup part can be');
  return Number(value);
}

/** Octal digits, optionally padded with spaces or NULs; null when malformed. */
function parseOctal(block: Buffer, offset: number, length: number): number | null {
  const text = block.toString('latin1', offset, offset + length).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]{1,12}$/.test(text)) return null;
  const value = parseInt(text, 8);
  return Number.isSafeInteger(value) ? value : null;
}

function corrupt(message: string): ConclaveError {
  return new ConclaveError('BACKUP_CORRUPT', `The backup is not a valid archive: ${message}.`);
}
