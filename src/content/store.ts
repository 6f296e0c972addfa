import type { AccessEntry } from './access.js';
import type { ChangeStamp, ContentChange } from './changes.js';
import type { HistoryRetention, NodeVersion, VersionMade } from './history.js';
import type { ContentNode, User } from './model.js';
import type { SchemaMigration, StoredSchema, WriteSchema } from './schemaState.js';

/**
 * What apply() needs from storage. The SQLite implementation lives in src/storage; apply() sees only this, so the
 * rules of the tree live in one place and do not depend on SQL.
 *
 * Every method runs inside the transaction of the entry being applied.
 */
export interface ContentStore {
  nodeByPath(path: string): ContentNode | undefined;
  nodeById(id: string): ContentNode | undefined;
  hasChildren(id: string): boolean;
  /** The children of a node in order. Used by reorder and positioned moves. */
  children(id: string): ContentNode[];
  /** The highest position among a node's children, or -1 when it has none. */
  lastChildPosition(id: string): number;
  /** Stores a new node; `made` says what made its first version (history keeps it once a change replaces it). */
  insertNode(node: ContentNode, made: VersionMade): void;
  /** Replaces the row with the node's id, as a new version made by `made` (after supersedeVersion). */
  updateNode(node: ContentNode, made: VersionMade): void;
  setPositions(positions: ReadonlyArray<{ id: string; position: number }>): void;
  /** Deletes the node and all its descendants; returns how many nodes were deleted. */
  deleteSubtree(node: ContentNode): number;
  /** The deepest level (number of "/") and the longest path in UTF-8 bytes of a node and its descendants. */
  subtreeExtent(path: string): { depthMax: number; bytesMax: number };
  /** Rewrites the path of a node and of every descendant from `from` to `to`. */
  movePaths(from: string, to: string): void;
  userByName(name: string): User | undefined;
  /** The access entries the node at `path` carries (undefined: none); src/content/access.ts decides with them. */
  accessEntriesAt(path: string): readonly AccessEntry[] | undefined;
  /** The cluster's search policy (setSearchPolicy): sets it and indexes the untyped nodes again; returns how many. */
  setSearchIndexesUntyped(on: boolean): number;
  /** Whether any node carries entries. */
  accessInUse(): boolean;
  /** Paths of the nodes strictly below `path` that carry entries. */
  accessPathsUnder(path: string): string[];
  /** Replaces the entries node `nodeId` carries (none: it carries none). */
  setAccessEntries(nodeId: string, entries: readonly AccessEntry[]): void;
  putUser(user: User): void;
  deleteUser(name: string): void;
  /** How many users hold the admin role; the last one may not lose it. */
  adminCount(): number;
  /** The id the token signing key is derived from (with the cluster secret); never the key itself. */
  setTokenKeyId(keyId: string): void;
  /** Records an event of the change feed (src/content/changes.ts) for the entry being applied. */
  recordChange(change: ContentChange): void;
  /**
   * Records `op` for every descendant of `path`, in path order: before deleting them, or after moving them from
   * `from` to `path` (each event names its new path and the old one).
   */
  recordDescendantChanges(path: string, op: 'deleted' | 'moved', stamp: ChangeStamp, from?: string): void;
  /** Drops the change feed's events of entries up to `through`. */
  pruneChanges(through: number): void;

  // Content history (src/content/history.ts). Every write below is a no-op until history has started.
  /** The retention in force, or undefined while history has not started. */
  historyRetention(): HistoryRetention | undefined;
  startHistory(retention: HistoryRetention, at: string): void;
  setHistoryRetention(retention: HistoryRetention): void;
  /** Before `node` (as stored now) changes: history keeps its current version, superseded at `at`. */
  supersedeVersion(node: ContentNode, at: string): void;
  /** Before the subtree at `path` is deleted: every node in it gets a last version, the delete's. */
  keepDeletedVersions(path: string, stamp: ChangeStamp): void;
  /** Version `version` of node `id` (kept, or its current one), or undefined. */
  nodeVersion(id: string, version: number): NodeVersion | undefined;
  /** The newest version number node `id` has had, its delete's for a deleted node; undefined if none is kept. */
  lastVersionNumber(id: string): number | undefined;
  /** Drops up to `rowsMax` versions superseded before `before`, oldest first; returns how many went. */
  pruneVersions(before: string, rowsMax: number): number;

  /** The journal index of the entry being applied. */
  currentEntryIndex(): number;

  // Schemas (src/content/schema.ts, schemaState.ts).
  /** The schema writes of `typeName` are checked against (the pending version during a migration), if any. */
  writeSchema(typeName: string): WriteSchema | undefined;
  /** The version of the type's schema in force, if any. */
  activeSchema(typeName: string): StoredSchema | undefined;
  /** Version `version` of the type's schema, in whatever state. */
  schemaVersion(typeName: string, version: number): StoredSchema | undefined;
  /** The newest version number the type's schema has had (0: none). */
  lastSchemaVersion(typeName: string): number;
  insertSchema(schema: StoredSchema): void;
  setSchemaState(typeName: string, version: number, state: StoredSchema['state']): void;
  schemaMigration(typeName: string): SchemaMigration | undefined;
  saveSchemaMigration(migration: SchemaMigration): void;
  schemasRequired(): boolean;
  /** Whether any write could meet a schema: a schema in force or pending, or schemas required. */
  schemasInUse(): boolean;
  setSchemasRequired(required: boolean): void;
  /** How many nodes have the type (0 without reading them all: only a migration's start counts them). */
  countNodesOfType(typeName: string): number;
  /**
   * Nodes of the type whose id sorts after `afterId`, in id order: up to `limit`, and no more once their properties
   * reach `bytesMax` (the first always comes).
   */
  nodesOfTypeAfter(typeName: string, afterId: string, limit: number, bytesMax: number): ContentNode[];
  /** A child of `parentId` whose type is not among `types`, if there is one. */
  childOutsideTypes(parentId: string, types: readonly string[]): ContentNode | undefined;
}
