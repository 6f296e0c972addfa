import { documentBody, documentText } from './operations.js';

/**
 * What the backup part of the bench stores before it measures, the same for Conclave and etcd: JSON documents of a
 * few KB and binaries of 1 to 8 MiB, named on the command line as CONTENT_MIB+BINARY_MIB ("200+800": 200 MiB of
 * documents and 800 MiB of binaries, a repository of about 1 GiB).
 */

const MiB = 1024 * 1024;
export const defaultBackupMix = '200+800';
export const quickBackupMix = '1+3';
/** Text of each document: a body of about 4 KB, the size of a typical page of a content repository. */
export const backupDocumentChars = 4000;
const binaryBytesMin = 1 * MiB;
const binaryBytesMax = 8 * MiB;

export interface BackupMix {
  /** As given: CONTENT_MIB+BINARY_MIB. */
  readonly name: string;
  readonly documents: number;
  /** Bytes of each document's JSON body. */
  readonly documentBytes: number;
  /** Size of each binary, in bytes: 1 to 8 MiB, the last one whatever remains of the volume asked for. */
  readonly binarySizes: readonly number[];
  /** Everything stored: document bodies and binaries. */
  readonly bytes: number;
}

export function parseBackupMix(text: string): BackupMix {
  const match = /^(\d+(?:\.\d+)?)\+(\d+(?:\.\d+)?)$/.exec(text);
  if (match === null) throw new Error(`--backup-mix takes CONTENT_MIB+BINARY_MIB (MiB of JSON documents + MiB of binaries), for example ${defaultBackupMix}, not "${text}"`);
  const [contentMib, binaryMib] = [Number(match[1]), Number(match[2])];
  if (contentMib + binaryMib <= 0) throw new Error(`--backup-mix stores nothing: "${text}"`);
  const documentBytes = Buffer.byteLength(backupDocumentBody(0));
  const documents = Math.round((contentMib * MiB) / documentBytes);
  const binarySizes = binarySizesOf(Math.round(binaryMib * MiB));
  return { name: text, documents, documentBytes, binarySizes, bytes: documents * documentBytes + binarySizes.reduce((sum, size) => sum + size, 0) };
}

const text = documentText(backupDocumentChars);

/** The JSON body of document `i`: the same bytes for both systems (etcd stores it as a value). */
export function backupDocumentBody(i: number): string {
  return documentBody(i, text);
}

/** Sizes spread evenly over 1..8 MiB in a fixed order (a run is repeatable), in whole KiB. */
function binarySizesOf(total: number): number[] {
  const sizes: number[] = [];
  let left = total;
  // A fixed linear congruential sequence: no randomness in what is stored, only in the bytes.
  let state = 12345;
  while (left > 0) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const size = Math.floor((binaryBytesMin + (state / 2 ** 31) * (binaryBytesMax - binaryBytesMin)) / 1024) * 1024;
    sizes.push(Math.min(size, left));
    left -= sizes[sizes.length - 1]!;
  }
  return sizes;
}
