import { createHash } from 'node:crypto';

import type { NodeVersion } from '../content/history.js';
import type { ContentNode, JsonValue, User } from '../content/model.js';
import { invariant } from '../errors/catalogue.js';

/**
 * A digest of the replicated content: two nodes that applied the same journal prefix produce byte-identical
 * digests, and any difference in what they serve changes it. It is computed over a canonical encoding, so nothing
 * local — the order rows were written in, rowids, the key order SQLite's JSON happened to keep, when an entry was
 * applied — enters it:
 *
 *   "conclave-content-digest-v1\n"
 *   one line per node, by id:   ["node", id, path, name, parentId, position, type, properties, binaries, version,
 *                                createdAt, createdBy, modifiedAt, modifiedBy]
 *   one line per user, by name: ["user", name, passwordHash, roles (sorted), version, createdAt, modifiedAt]
 *   one line per kept version (content history), by node id and version:
 *                               ["version", id, version, op, index, restoredFrom, supersededAt, path, name, parentId,
 *                                position, type, properties, binaries, createdAt, createdBy, modifiedAt, modifiedBy]
 *
 *   the schemas' lines (src/storage/schemaTables.ts digestLines): ["schema", type, version, state, definition, index,
 *                                createdAt, createdBy] by type and version, ["migration", type, …] by type, and
 *                                ["schemasRequired", true] when the policy is on; then the access entries' lines
 *                                (src/storage/accessTables.ts): ["access", nodeId, entries] by node id (all these
 *                                are counted as schemaLines, the name they had first)
 *
 * A state without history (or of a release before it) has no version lines, and one without schemas no schema
 * lines, so its digest is what it always was.
 * ids and names in UTF-8 byte order (SQLite's), each line canonical JSON (object keys sorted by UTF-16 code units,
 * no white space) and a newline; binaries are their references {sha256, size, contentType}, by property name.
 * Times and authors are carried by the journal's commands, so they are the same on every node.
 */
export const contentDigestVersion = 'conclave-content-digest-v1';

export interface ContentDigest {
  readonly digest: string;
  /** blobs: distinct blobs the nodes reference (what they serve); versions: kept versions, whose blobs are kept too. */
  readonly counts: { readonly nodes: number; readonly users: number; readonly binaryReferences: number; readonly blobs: number; readonly versions: number; readonly schemaLines: number };
}

/**
 * Nodes must come by ascending id and users by ascending name, comparing UTF-8 bytes as SQLite's ORDER BY does
 * (checked): the order is part of the encoding.
 */
export function contentDigest(nodes: Iterable<ContentNode>, users: Iterable<User>, versions: Iterable<NodeVersion> = [], schemaLines: Iterable<JsonValue> = []): ContentDigest {
  const hash = createHash('sha256');
  // Lines go to the hash in batches: a native call per line cost about as much as hashing the line.
  let pending = `${contentDigestVersion}\n`;
  const add = (line: string) => {
    pending += line;
    if (pending.length >= hashBatchChars) {
      hash.update(pending);
      pending = '';
    }
  };
  let nodeCount = 0;
  let userCount = 0;
  let binaryReferences = 0;
  const blobs = new Set<string>();
  let previous: string | null = null;
  for (const node of nodes) {
    invariant(previous === null || utf8Before(previous, node.id), 'nodes are digested by ascending id');
    previous = node.id;
    const binaries = binaryLine(node);
    for (const ref of Object.values(node.binaries)) {
      blobs.add(ref.sha256);
      binaryReferences++;
    }
    const line: JsonValue = [
      'node',
      node.id,
      node.path,
      node.name,
      node.parentId,
      node.position,
      node.type,
      node.properties,
      binaries,
      node.version,
      node.createdAt,
      node.createdBy,
      node.modifiedAt,
      node.modifiedBy,
    ];
    add(`${canonicalJson(line)}\n`);
    nodeCount++;
  }
  previous = null;
  for (const user of users) {
    invariant(previous === null || utf8Before(previous, user.name), 'users are digested by ascending name');
    previous = user.name;
    const line: JsonValue = ['user', user.name, user.passwordHash, [...user.roles].sort(), user.version, user.createdAt, user.modifiedAt];
    add(`${canonicalJson(line)}\n`);
    userCount++;
  }
  let versionCount = 0;
  let previousVersion: NodeVersion | null = null;
  for (const v of versions) {
    invariant(
      previousVersion === null || (previousVersion.id === v.id ? previousVersion.version < v.version : utf8Before(previousVersion.id, v.id)),
      'versions are digested by ascending node id and version',
    );
    previousVersion = v;
    const n = v.node;
    const line: JsonValue = [
      'version', v.id, v.version, v.op, v.index, v.restoredFrom, v.supersededAt, n.path, n.name, n.parentId, n.position, n.type, n.properties,
      binaryLine(n), n.createdAt, n.createdBy, n.modifiedAt, n.modifiedBy,
    ];
    add(`${canonicalJson(line)}\n`);
    versionCount++;
  }
  let schemaLineCount = 0;
  for (const line of schemaLines) {
    add(`${canonicalJson(line)}\n`);
    schemaLineCount++;
  }
  hash.update(pending);
  return { digest: hash.digest('hex'), counts: { nodes: nodeCount, users: userCount, binaryReferences, blobs: blobs.size, versions: versionCount, schemaLines: schemaLineCount } };
}

/** A node's binaries as the digest encodes them: their references {sha256, size, contentType}, by property name. */
function binaryLine(node: ContentNode): Record<string, JsonValue> {
  const binaries: Record<string, JsonValue> = {};
  for (const [name, ref] of Object.entries(node.binaries)) binaries[name] = { sha256: ref.sha256, size: ref.size, contentType: ref.contentType };
  return binaries;
}

/** JSON with object keys sorted (by UTF-16 code units, as JavaScript compares strings) and no white space. */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') {
    invariant(typeof value !== 'number' || Number.isFinite(value), 'JSON numbers are finite');
    return JSON.stringify(value);
  }
  // Concatenated in loops: map and join made an array per array and per object.
  let text: string;
  if (Array.isArray(value)) {
    text = '[';
    for (let i = 0; i < value.length; i++) text += (i === 0 ? '' : ',') + canonicalJson(value[i]!);
    return `${text}]`;
  }
  const keys = Object.keys(value).sort();
  text = '{';
  for (let i = 0; i < keys.length; i++) text += `${i === 0 ? '' : ','}${JSON.stringify(keys[i])}:${canonicalJson(value[keys[i]!]!)}`;
  return `${text}}`;
}

/** The characters of hash input gathered before one update: a few lines, whatever the repository's size. */
const hashBatchChars = 64 * 1024;

/**
 * Whether `a` sorts before `b` by UTF-8 bytes. UTF-16 code units below the surrogates (U+D800) order as their
 * UTF-8 encodings do, so only a first difference at or above one needs the bytes (ids are mostly ASCII, and
 * encoding both for every node cost a tenth of the digest). Exported for tests.
 */
export function utf8Before(a: string, b: string): boolean {
  const common = Math.min(a.length, b.length);
  for (let i = 0; i < common; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x < 0xd800 && y < 0xd800) return x < y;
    return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')) < 0;
  }
  return a.length < b.length;
}
