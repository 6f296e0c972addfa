import type { SchemaDefinition, SchemaViolation } from './schema.js';

/**
 * The schemas a repository holds, as apply() keeps them: every version of every type's schema, each in one state.
 * At most one version of a type is `active` (in force) and at most one `pending` (the target of a running or failed
 * migration); writes of a type with a pending version are checked against the pending one (see docs/operations.md
 * "Schemas"), so nothing written during a migration needs converting and nothing the walk passed is undone.
 */
export type SchemaState = 'active' | 'pending' | 'superseded' | 'deleted' | 'abandoned';

export interface StoredSchema {
  readonly typeName: string;
  readonly version: number;
  readonly definition: SchemaDefinition;
  readonly state: SchemaState;
  /** The journal index of the entry that wrote it. */
  readonly index: number;
  readonly createdAt: string;
  readonly createdBy: string;
}

/** The schema writes of a type are checked against, and whether a migration towards it is under way. */
export interface WriteSchema {
  readonly schema: StoredSchema;
  readonly migrating: boolean;
}

export type MigrationState = 'running' | 'failed' | 'done' | 'abandoned';

/** The node a migration could not convert, and why. */
export interface MigrationFailure {
  readonly id: string;
  readonly path: string;
  readonly message: string;
  readonly violations: readonly SchemaViolation[];
}

/**
 * A type's latest migration, kept in the content state (not the cluster state) so that apply() can check each batch
 * against the committed progress: `afterId`, the id of the last node the walk passed (nodes are walked in id order,
 * which moves and renames do not change).
 */
export interface SchemaMigration {
  readonly typeName: string;
  /** The version in force when it started; null when the type had none. */
  readonly fromVersion: number | null;
  readonly toVersion: number;
  readonly state: MigrationState;
  readonly afterId: string;
  readonly nodesDone: number;
  readonly nodesConverted: number;
  /** Nodes of the type when it started (nodes created meanwhile are walked too: done may pass it). */
  readonly nodesTotal: number;
  readonly batches: number;
  readonly startedAt: string;
  readonly startedBy: string;
  readonly startedIndex: number;
  readonly updatedAt: string;
  readonly finishedAt: string | null;
  readonly failure: MigrationFailure | null;
}

/** A schema's entity tag: the type and the version, so a tag of a deleted and rewritten schema never matches. */
export function schemaEtag(schema: Pick<StoredSchema, 'typeName' | 'version'>): string {
  return `"${schema.typeName}:${schema.version}"`;
}

/** Whether a migration holds its type's schema: until it is done or abandoned, the schema cannot change. */
export function migrationPending(migration: SchemaMigration | undefined): boolean {
  return migration !== undefined && (migration.state === 'running' || migration.state === 'failed');
}
