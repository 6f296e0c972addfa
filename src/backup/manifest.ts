import { z } from 'zod';

import type { ClusterState } from '../core/clusterState.js';
import type { ConfigurationPayload } from '../core/types.js';
import { ConclaveError } from '../errors/catalogue.js';

/**
 * The manifest of a backup: the first entry of the archive (`manifest.json`), so a reader knows every part, its
 * size and SHA-256 before it reads any of them. Layout of a backup file (ustar, see tarFormat.ts):
 *
 *   manifest.json      this
 *   state.db           the state machine at `index`: a SQLite file with the node's schema and an empty journal,
 *                      the same a snapshot file is (src/storage/snapshotFile.ts)
 *   blobs/<sha256>     each blob the state references, except those the base backup's chain holds, in the order
 *                      `parts` lists them
 *
 * Nothing in it is usable without the cluster secret: the token key is held as its id only (the key is derived
 * from the secret), and password hashes are the users' own. docs/operations.md "Backups" is the user's view.
 */
export const backupFormatName = 'conclave-backup';
/** Bumped when a reader of this version could misread a newer backup; a newer one is refused (BACKUP_FORMAT_NEWER). */
export const backupFormatVersion = 1;

export const manifestEntryName = 'manifest.json';
export const stateEntryName = 'state.db';
export const blobEntryPrefix = 'blobs/';

export interface BackupPart {
  /** `state.db` or `blobs/<sha256>`. */
  readonly name: string;
  readonly bytes: number;
  readonly sha256: string;
}

/** The backup a newer one was taken against: it holds (with its own chain) every blob the newer one leaves out. */
export interface BackupBase {
  readonly id: string;
  readonly index: number;
  readonly createdAt: string;
  /** The base's file name when the backup was taken (a restore looks for it beside this file). */
  readonly file: string;
}

export interface BackupManifest {
  readonly format: typeof backupFormatName;
  readonly formatVersion: number;
  /** A random UUID naming this backup. */
  readonly id: string;
  readonly createdAt: string;
  readonly conclaveVersion: string;
  readonly dataFormatVersion: number;
  readonly cluster: { readonly name: string; readonly uuid: string };
  /** The node the backup was taken from. */
  readonly source: { readonly nodeId: string; readonly nodeName: string };
  /** The applied index the state is exactly at, and that entry's term. */
  readonly index: number;
  readonly term: number;
  /** The voting configuration in force at `index`, and the cluster state there (a clone starts from both). */
  readonly configuration: Omit<ConfigurationPayload, 'kind'>;
  readonly clusterState: ClusterState;
  /** What `conclave digest` reports at `index` (src/replication/contentDigest.ts). */
  readonly contentDigest: {
    readonly version: string;
    readonly digest: string;
    readonly counts: { readonly nodes: number; readonly users: number; readonly binaryReferences: number; readonly blobs: number; readonly versions: number; readonly schemaLines: number };
  };
  readonly base: BackupBase | null;
  /** Every blob the state references, sorted: the blobs of this file and of its base chain together. */
  readonly blobsReferenced: readonly string[];
  /** state.db first, then the blobs this file holds. */
  readonly parts: readonly BackupPart[];
}

const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const text = (max: number) => z.string().min(1).max(max);

const partSchema = z.object({ name: text(100), bytes: count, sha256 }).strict();

/**
 * The shape of a manifest of this format version. The cluster state is checked for the fields a restore reads
 * (and passed on whole: it is what the source node held, and the journal's own rules apply it).
 */
const manifestSchema = z
  .object({
    format: z.literal(backupFormatName),
    formatVersion: z.literal(backupFormatVersion),
    id: z.uuid(),
    createdAt: z.iso.datetime(),
    conclaveVersion: text(32),
    dataFormatVersion: z.number().int().min(1),
    cluster: z.object({ name: text(64), uuid: text(64) }).strict(),
    source: z.object({ nodeId: text(128), nodeName: text(64) }).strict(),
    index: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    term: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    configuration: z.object({ current: z.array(text(128)).min(1).max(1024), next: z.array(text(128)).max(1024).optional() }).strict(),
    clusterState: z
      .object({
        version: count,
        clusterName: text(64),
        clusterUuid: text(64),
        nodes: z.array(z.object({ id: text(128), name: text(64) }).loose()).max(10_000),
        votingConfiguration: z.object({ current: z.array(text(128)), next: z.array(text(128)).optional() }).strict(),
        votingExclusions: z.array(text(128)),
        settings: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
        inSync: z.array(text(128)),
      })
      .loose(),
    contentDigest: z
      .object({
        version: text(64),
        digest: sha256,
        counts: z.object({ nodes: count, users: count, binaryReferences: count, blobs: count, versions: count.default(0), schemaLines: count.default(0) }).strict(),
      })
      .strict(),
    base: z.object({ id: z.uuid(), index: z.number().int().min(1), createdAt: z.iso.datetime(), file: text(255) }).strict().nullable(),
    blobsReferenced: z.array(sha256),
    parts: z.array(partSchema).min(1),
  })
  .strict();

/**
 * Parses and checks a manifest: the format, then its shape, then what its parts must be (state.db first, blob
 * parts named by their SHA-256 and referenced by the state, no part twice). A newer format is BACKUP_FORMAT_NEWER
 * (upgrade the tool), anything malformed BACKUP_CORRUPT.
 */
export function parseManifest(bytes: Buffer): BackupManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw corrupt('its manifest is not JSON');
  }
  if (typeof raw !== 'object' || raw === null || (raw as { format?: unknown }).format !== backupFormatName) {
    throw corrupt('its manifest does not describe a Conclave backup');
  }
  const version = (raw as { formatVersion?: unknown }).formatVersion;
  if (typeof version === 'number' && Number.isInteger(version) && version > backupFormatVersion) {
    throw new ConclaveError(
      'BACKUP_FORMAT_NEWER',
      `The backup has format version ${version}; this conclave reads version ${backupFormatVersion} and older. Restore it with a newer conclave.`,
      { formatVersion: version, readable: backupFormatVersion },
    );
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw corrupt(`its manifest is malformed at ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  const manifest = parsed.data as unknown as BackupManifest;
  checkParts(manifest);
  return manifest;
}

function checkParts(manifest: BackupManifest): void {
  const [state, ...blobs] = manifest.parts;
  if (state!.name !== stateEntryName) throw corrupt(`its first part is ${state!.name}, not ${stateEntryName}`);
  const referenced = new Set(manifest.blobsReferenced);
  if (referenced.size !== manifest.blobsReferenced.length) throw corrupt('its manifest names a referenced blob twice');
  for (let i = 1; i < manifest.blobsReferenced.length; i++) {
    if (manifest.blobsReferenced[i - 1]! >= manifest.blobsReferenced[i]!) throw corrupt('its referenced blobs are not sorted');
  }
  const seen = new Set<string>();
  for (const part of blobs) {
    const hash = part.name.startsWith(blobEntryPrefix) ? part.name.slice(blobEntryPrefix.length) : '';
    if (hash !== part.sha256) throw corrupt(`its part ${part.name} is not named blobs/<its SHA-256>`);
    if (seen.has(hash)) throw corrupt(`its part ${part.name} is listed twice`);
    if (!referenced.has(hash)) throw corrupt(`its part ${part.name} is a blob the state does not reference`);
    seen.add(hash);
  }
  if (manifest.base === null && seen.size !== referenced.size) {
    throw corrupt(`it has no base backup yet holds ${seen.size} of the ${referenced.size} blobs its state references`);
  }
}

function corrupt(message: string): ConclaveError {
  return new ConclaveError('BACKUP_CORRUPT', `The backup is not valid: ${message}.`);
}

/** The canonical file name of a backup: sorts by time, says which cluster and index. */
export function backupFileName(manifest: Pick<BackupManifest, 'cluster' | 'index' | 'createdAt'>): string {
  const stamp = manifest.createdAt.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `conclave-${manifest.cluster.name}-${stamp}-${manifest.index}.backup.tar`;
}
