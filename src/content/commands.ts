import type { AccessEntry } from './access.js';
import type { HistoryRetention } from './history.js';
import type { BinaryRef, JsonObject, Role } from './model.js';
import type { SchemaDefinition } from './schema.js';

/**
 * The commands a journal entry carries. A command holds every input its apply() needs — ids, times, password
 * hashes — so that applying it is deterministic: the same journal gives the same state on every node, on every
 * replay. Nothing random or clock-based is computed during apply.
 */

/** The fields of Preconditions, as commands and batch operations carry them. */
export const preconditionFields: readonly string[] = ['ifMatch', 'ifNoneMatch'];

/** Preconditions from If-Match / If-None-Match, checked at apply time against the state the entry meets. */
export interface Preconditions {
  /** Entity tags of which one must match, or '*' for "the node exists". */
  readonly ifMatch?: readonly string[] | '*';
  /** '*' for "the node must not exist" (create-only). */
  readonly ifNoneMatch?: '*';
}

interface Authored {
  readonly time: string;
  readonly user: string;
}

export interface BootstrapCommand {
  readonly type: 'bootstrap';
  readonly rootId: string;
  readonly time: string;
  /**
   * Names the bearer-token signing key, which every node derives from the cluster secret and this id (auth/tokens.ts):
   * the journal holds no key. Absent in entries of releases that journaled the key itself.
   */
  readonly tokenKeyId?: string;
  /** Journaled by older releases; ignored (a journal must not hold what forges tokens). */
  readonly tokenKey?: string;
  /** The first admin, created in the same entry so no repository ever exists without one. */
  readonly adminPasswordHash: string;
  /** Present: the repository keeps content history from its first entry (a release that keeps history sets it). */
  readonly history?: HistoryRetention;
}

export interface PutCommand extends Authored, Preconditions {
  readonly type: 'put';
  readonly path: string;
  /** The id the node gets if this put creates it. */
  readonly newId: string;
  /**
   * Absent: a replace keeps the node's type and a create gives the default type (a client that only sends
   * properties must not turn a folder into a plain node). Entries journaled before this rule always carry it.
   */
  readonly nodeType?: string;
  readonly properties: JsonObject;
}

export interface PatchCommand extends Authored, Preconditions {
  readonly type: 'patch';
  readonly path: string;
  readonly patch: JsonObject;
}

export interface DeleteCommand extends Authored, Preconditions {
  readonly type: 'delete';
  readonly path: string;
  readonly recursive: boolean;
}

export interface MoveCommand extends Authored, Preconditions {
  readonly type: 'move';
  readonly from: string;
  readonly to: string;
  /** Name of the sibling to place the node before at its destination; null puts it last. */
  readonly before: string | null;
}

export interface ReorderCommand extends Authored, Preconditions {
  readonly type: 'reorder';
  readonly path: string;
  /** Every child's name exactly once, in the new order. */
  readonly order: readonly string[];
}

export interface SetBinaryCommand extends Authored, Preconditions {
  readonly type: 'setBinary';
  readonly path: string;
  readonly property: string;
  readonly binary: BinaryRef;
}

export interface DeleteBinaryCommand extends Authored, Preconditions {
  readonly type: 'deleteBinary';
  readonly path: string;
  readonly property: string;
}

export interface PutUserCommand {
  readonly type: 'putUser';
  readonly name: string;
  /** Present to set or change the password; absent keeps the current one. */
  readonly passwordHash?: string;
  readonly roles?: readonly Role[];
  /** True for create-only (the first admin must never overwrite an existing one). */
  readonly createOnly: boolean;
  readonly time: string;
}

export interface DeleteUserCommand {
  readonly type: 'deleteUser';
  readonly name: string;
  readonly time: string;
}

/**
 * The token key id of a repository bootstrapped before key ids existed. Every such repository gets this same id, but
 * not the same key: the key is derived from the cluster secret too.
 */
export const legacyTokenKeyId = 'legacy';

/** A new token key id: every token issued before is refused from the entry's application on. */
export interface RotateTokenKeyCommand {
  readonly type: 'rotateTokenKey';
  readonly keyId: string;
  readonly time: string;
}

/**
 * Drops the change feed's events of entries up to `through` (src/changes/changePruner.ts proposes it on the master):
 * pruning through the journal keeps every node's feed the same, so a client that moves between nodes gets the same
 * answer, CHANGES_COMPACTED included.
 */
export interface PruneChangesCommand {
  readonly type: 'pruneChanges';
  readonly through: number;
  readonly time: string;
}

/**
 * Starts content history: from this entry on, every node keeps its versions (src/content/history.ts). Proposed by the
 * master once every member runs a release that keeps them (src/history/historyKeeper.ts); again, it only sets the
 * retention.
 */
export interface StartHistoryCommand extends HistoryRetention {
  readonly type: 'startHistory';
  readonly time: string;
}

/**
 * History's retention, through the journal so that every node keeps the same versions: sets the versions kept per
 * node (applied to a node at its next change) and drops at most `versionsMax` versions superseded before
 * `supersededBefore`, oldest first. The master proposes it (src/history/historyKeeper.ts).
 */
export interface PruneVersionsCommand extends HistoryRetention {
  readonly type: 'pruneVersions';
  readonly supersededBefore: string;
  readonly versionsMax: number;
  readonly time: string;
}

/**
 * Makes version `version` of node `id` current again, as a new version: its type, properties and binaries (a live
 * node keeps its place in the tree). A deleted node is re-created under its id at `path`, whose parent must exist.
 * Preconditions apply to the live node.
 */
export interface RestoreCommand extends Authored, Preconditions {
  readonly type: 'restore';
  readonly id: string;
  readonly version: number;
  readonly path: string;
}

/**
 * Writes version N+1 of type `typeName`'s schema (src/content/schema.ts). With no node of the type, it is in force
 * from this entry; otherwise it is pending and a migration of the type's nodes starts (src/content/schemaMigration.ts).
 * `definition` is as parseSchemaDefinition returned it. Preconditions name the version in force ("<type>:<version>").
 */
export interface PutSchemaCommand extends Authored, Preconditions {
  readonly type: 'putSchema';
  readonly typeName: string;
  readonly definition: SchemaDefinition;
}

/** The type's schema is no longer in force: its nodes are free-form again (unless schemas are required). */
export interface DeleteSchemaCommand extends Authored, Preconditions {
  readonly type: 'deleteSchema';
  readonly typeName: string;
}

/** Whether every content type (but the root's) needs a schema. */
/**
 * The cluster's search policy: whether the strings of nodes whose type has no schema are indexed (their names always
 * are). Applying it indexes every such node again.
 */
export interface SetSearchPolicyCommand extends Authored {
  readonly type: 'setSearchPolicy';
  readonly indexUntypedNodes: boolean;
}

/** Replaces the access entries the node at `path` carries (src/content/access.ts); none: it carries none. */
export interface SetAccessCommand extends Authored {
  readonly type: 'setAccess';
  readonly path: string;
  readonly entries: readonly AccessEntry[];
}

export interface SetSchemaPolicyCommand extends Authored {
  readonly type: 'setSchemaPolicy';
  readonly schemasRequired: boolean;
}

/**
 * One batch of a migration, proposed by the master's migration job: converts up to `nodesMax` nodes of the type after
 * node id `afterId` to schema version `toVersion`. `afterId` is the progress the proposer read as committed: apply
 * refuses the batch unless it still is (SCHEMA_MIGRATION_STALE), so a batch of a replaced master never runs a range
 * twice or out of order.
 */
export interface MigrateSchemaCommand {
  readonly type: 'migrateSchema';
  readonly typeName: string;
  readonly toVersion: number;
  readonly afterId: string;
  readonly nodesMax: number;
  readonly time: string;
}

/** Retries a failed migration from the node it stopped at, or abandons a running or failed one. */
export interface ResolveSchemaMigrationCommand extends Authored {
  readonly type: 'resolveSchemaMigration';
  readonly typeName: string;
  readonly action: 'retry' | 'abandon';
}

/** The schema writes a client makes (an admin's; forwardable); the migration's batches are the master's own. */
export const schemaCommandTypes: ReadonlySet<Command['type']> = new Set(['putSchema', 'deleteSchema', 'setSchemaPolicy', 'resolveSchemaMigration']);

/** An operation of a batch: a content command without its author and time, which the batch carries once. */
export type BatchOperation =
  | Omit<PutCommand, 'time' | 'user'>
  | Omit<PatchCommand, 'time' | 'user'>
  | Omit<DeleteCommand, 'time' | 'user'>
  | Omit<MoveCommand, 'time' | 'user'>
  | Omit<ReorderCommand, 'time' | 'user'>;

/** The content commands a batch may hold (binaries stay separate uploads: their blob must reach a quorum first). */
export const batchOperationTypes: ReadonlySet<BatchOperation['type']> = new Set(['put', 'patch', 'delete', 'move', 'reorder']);

/**
 * Several content writes as one journal entry, applied in order against the state each one leaves: all of them, or
 * — when one is refused (a failed precondition, a missing parent) — none, on every node alike.
 */
export interface BatchCommand extends Authored {
  readonly type: 'batch';
  readonly operations: readonly BatchOperation[];
}

export type Command =
  | BootstrapCommand
  | PutSchemaCommand
  | DeleteSchemaCommand
  | SetSchemaPolicyCommand
  | SetAccessCommand
  | SetSearchPolicyCommand
  | MigrateSchemaCommand
  | ResolveSchemaMigrationCommand
  | StartHistoryCommand
  | PruneVersionsCommand
  | RestoreCommand
  | BatchCommand
  | PruneChangesCommand
  | RotateTokenKeyCommand
  | PutCommand
  | PatchCommand
  | DeleteCommand
  | MoveCommand
  | ReorderCommand
  | SetBinaryCommand
  | DeleteBinaryCommand
  | PutUserCommand
  | DeleteUserCommand;
