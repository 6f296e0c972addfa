import { ConclaveError, invariant } from '../errors/catalogue.js';
import type { Command, DeleteSchemaCommand, MigrateSchemaCommand, PutSchemaCommand, ResolveSchemaMigrationCommand, SetSchemaPolicyCommand } from './commands.js';
import { applyMergePatch, isPlainObject } from './mergePatch.js';
import { defaultNodeType, rootNodeType, type ContentNode, type JsonObject } from './model.js';
import { parentPath } from './paths.js';
import { checkPropertiesSize } from './validate.js';
import { checkSchemaPreconditions } from './preconditions.js';
import { saveChange } from './saveChange.js';
import { checkChildType, conformingProperties, convertToSchema, sameJson, schemaViolations, type SchemaDefinition, type SchemaViolation } from './schema.js';
import { migrationPending, type SchemaMigration, type StoredSchema } from './schemaState.js';
import type { ContentStore } from './store.js';
import { hasAccess } from './access.js';
import { subjectOf } from './applyAccess.js';

/**
 * The schema rules of apply(): how writes of typed nodes are checked against the schema in force at their entry, and
 * the entries that change schemas and migrate nodes. Every check reads only the state the entry meets, so every node
 * refuses the same writes.
 */

/** What a schema entry answers. */
export interface SchemaResult {
  readonly schema?: StoredSchema;
  readonly migration?: SchemaMigration;
  readonly schemasRequired?: boolean;
}

/** A node's type, path and properties as a write would leave them. */
interface Written {
  readonly path: string;
  readonly type: string;
  readonly properties: JsonObject;
}

/**
 * The properties a write stores for a node of `type`: with its schema's defaults filled in, or SCHEMA_VIOLATION
 * naming every rule they break (SCHEMA_REQUIRED where schemas are required and the type has none). A patch merges into
 * patchBase's properties first, a restore converts with restoredProperties.
 */
export function conformingWrite(store: ContentStore, written: Written): JsonObject {
  const target = store.writeSchema(written.type);
  if (target === undefined) {
    if (written.type !== rootNodeType && store.schemasRequired()) {
      throw new ConclaveError('SCHEMA_REQUIRED', `${written.path}: the type ${written.type} has no schema, and this repository requires one for every type (PUT /api/v1/schemas/${written.type}).`, {
        path: written.path,
        type: written.type,
      });
    }
    return written.properties;
  }
  const properties = conformingProperties(target.schema, written.path, written.type, written.properties);
  // Defaults may have made them larger or deeper than a write may: checked as the write itself was.
  if (properties !== written.properties) checkPropertiesSize(properties);
  return properties;
}

/** The properties a patch starts from: the node's, converted to the pending schema while its type migrates. */
export function patchBase(store: ContentStore, node: ContentNode): JsonObject {
  const target = store.writeSchema(node.type);
  return target?.migrating === true ? convertToSchema(target.schema.definition, node.properties) : node.properties;
}

/**
 * The properties of an earlier version, as a restore brings them back: converted to the schema writes of the type
 * are checked against (renames, then defaults), as a migration would have converted them had the version been
 * current. A version no conversion makes valid is refused (SCHEMA_VIOLATION) by the check that follows.
 */
export function restoredProperties(store: ContentStore, type: string, properties: JsonObject): JsonObject {
  const target = store.writeSchema(type);
  return target === undefined ? properties : convertToSchema(target.schema.definition, properties);
}

/** Refuses placing a node of `type` at `path` under `parent` when the parent's schema limits its children's types. */
export function checkPlacement(store: ContentStore, parent: ContentNode, path: string, type: string): void {
  checkChildType(parent, store.writeSchema(parent.type)?.schema, path, type);
}

/** Refuses giving `node` the type `type` when its schema does not allow a child it has. */
export function checkOwnChildren(store: ContentStore, node: ContentNode, type: string, user: string): void {
  const schema = store.writeSchema(type)?.schema;
  const allowed = schema?.definition.childTypes;
  if (allowed === undefined) return;
  const outside = store.childOutsideTypes(node.id, allowed);
  if (outside === undefined) return;
  // A child the writer may not read is not named (src/content/access.ts): the refusal says only that one is there.
  if (store.accessInUse() && !hasAccess((p) => store.accessEntriesAt(p), outside.path, subjectOf(store, user), 'read')) {
    throw new ConclaveError('SCHEMA_VIOLATION', `${node.path} (type ${type}) holds a child whose type the schema does not allow.`, {
      path: node.path,
      type,
      schemaVersion: schema!.version,
      violations: [{ property: '', rule: 'childTypes', message: 'a child of a type that is not allowed' }],
    });
  }
  checkChildType({ path: node.path, type }, schema, outside.path, outside.type);
}

function requireNoMigration(store: ContentStore, typeName: string): void {
  const migration = store.schemaMigration(typeName);
  if (migrationPending(migration)) {
    throw new ConclaveError('SCHEMA_MIGRATION_PENDING', `The schema of ${typeName} is being migrated to version ${migration!.toVersion} (${migration!.state}); retry or abandon that migration first.`, {
      type: typeName,
      migration: migration!.state,
    });
  }
}

/**
 * The most bytes of properties one migration batch reads and converts, whatever its node count: a constant, like
 * every bound apply() depends on, so every node cuts a batch at the same node.
 */
export const migrationBatchBytesMax = 16 * 1024 * 1024;

export function applyPutSchema(store: ContentStore, command: PutSchemaCommand): SchemaResult {
  const index = store.currentEntryIndex();
  invariant(command.typeName !== rootNodeType, 'the root type has no schema (the route refuses it)');
  const active = store.activeSchema(command.typeName);
  checkSchemaPreconditions(active, command, command.typeName);
  requireNoMigration(store, command.typeName);
  // Writing the version in force again changes nothing: a retried request is not a new version and no migration.
  if (active !== undefined && sameJson(active.definition as never, command.definition as never)) return { schema: active };
  const total = store.countNodesOfType(command.typeName);
  const schema: StoredSchema = {
    typeName: command.typeName,
    version: store.lastSchemaVersion(command.typeName) + 1,
    definition: command.definition,
    state: total === 0 ? 'active' : 'pending',
    index,
    createdAt: command.time,
    createdBy: command.user,
  };
  if (total === 0) {
    if (active !== undefined) store.setSchemaState(command.typeName, active.version, 'superseded');
    store.insertSchema(schema);
    return { schema };
  }
  store.insertSchema(schema);
  const migration: SchemaMigration = {
    typeName: command.typeName,
    fromVersion: active?.version ?? null,
    toVersion: schema.version,
    state: 'running',
    afterId: '',
    nodesDone: 0,
    nodesConverted: 0,
    nodesTotal: total,
    batches: 0,
    startedAt: command.time,
    startedBy: command.user,
    startedIndex: index,
    updatedAt: command.time,
    finishedAt: null,
    failure: null,
  };
  store.saveSchemaMigration(migration);
  return { schema, migration };
}

export function applyDeleteSchema(store: ContentStore, command: DeleteSchemaCommand): SchemaResult {
  const active = store.activeSchema(command.typeName);
  checkSchemaPreconditions(active, command, command.typeName);
  requireNoMigration(store, command.typeName);
  if (active === undefined) throw schemaNotFound(command.typeName);
  store.setSchemaState(command.typeName, active.version, 'deleted');
  return { schema: { ...active, state: 'deleted' } };
}

export function schemaNotFound(typeName: string): ConclaveError {
  return new ConclaveError('SCHEMA_NOT_FOUND', `No schema is in force for the type ${typeName}.`, { type: typeName });
}

export function applySetSchemaPolicy(store: ContentStore, command: SetSchemaPolicyCommand): SchemaResult {
  store.setSchemasRequired(command.schemasRequired);
  return { schemasRequired: command.schemasRequired };
}

/** Why `node` cannot be converted to `definition`, or undefined when it can. */
function conversionProblem(store: ContentStore, definition: SchemaDefinition, node: ContentNode, converted: JsonObject): { message: string; violations: SchemaViolation[] } | undefined {
  try {
    checkPropertiesSize(converted);
  } catch (err) {
    if (!(err instanceof ConclaveError)) throw err;
    return { message: err.message, violations: [{ property: '', rule: 'size', message: err.message }] };
  }
  const violations = schemaViolations(definition, converted);
  if (violations.length > 0) return { message: `${violations[0]!.property || 'the node'} ${violations[0]!.message}`, violations };
  const allowed = definition.childTypes;
  const outside = allowed === undefined ? undefined : store.childOutsideTypes(node.id, allowed);
  if (outside !== undefined) {
    return { message: `its child ${outside.path} has the type ${outside.type}, which the schema does not allow`, violations: [{ property: '', rule: 'childTypes', message: `a child of type ${outside.type} is not allowed` }] };
  }
  return undefined;
}

/**
 * One batch of a migration: the next nodes of the type after the committed progress, each converted (renames, then
 * defaults) and stored as a new version made by `migrated` when that changed it. The first node that cannot be
 * converted stops the migration (`failed`, naming it) with the batch's earlier nodes kept; the batch that finds the
 * walk's end makes the new version the one in force.
 */
export function applyMigrateSchema(store: ContentStore, command: MigrateSchemaCommand): SchemaResult {
  invariant(Number.isSafeInteger(command.nodesMax) && command.nodesMax >= 1, `a migration batch of ${String(command.nodesMax)} nodes`);
  const migration = store.schemaMigration(command.typeName);
  if (migration === undefined || migration.state !== 'running' || migration.toVersion !== command.toVersion || migration.afterId !== command.afterId) {
    throw new ConclaveError('SCHEMA_MIGRATION_STALE', `The migration of ${command.typeName} to version ${command.toVersion} is not running from ${JSON.stringify(command.afterId)}; this batch was refused.`, {
      type: command.typeName,
      committed: migration === undefined ? null : { state: migration.state, toVersion: migration.toVersion, afterId: migration.afterId },
    });
  }
  const target = store.schemaVersion(command.typeName, migration.toVersion);
  invariant(target?.state === 'pending', `the migration of ${command.typeName} runs to version ${migration.toVersion}, which is not pending`);
  const stamp = { time: command.time, user: migration.startedBy };
  let afterId = migration.afterId;
  let done = migration.nodesDone;
  let converted = migration.nodesConverted;
  const nodes = store.nodesOfTypeAfter(command.typeName, afterId, command.nodesMax, migrationBatchBytesMax);
  // A batch that reaches the end of the walk finds fewer nodes than it may take and no more bytes than its bound.
  const lastNodeId = nodes.at(-1)?.id;
  for (const node of nodes) {
    const properties = convertToSchema(target.definition, node.properties);
    const problem = conversionProblem(store, target.definition, node, properties);
    if (problem !== undefined) {
      const failed: SchemaMigration = {
        ...migration,
        state: 'failed',
        afterId,
        nodesDone: done,
        nodesConverted: converted,
        batches: migration.batches + 1,
        updatedAt: command.time,
        failure: { id: node.id, path: node.path, ...problem },
      };
      store.saveSchemaMigration(failed);
      return { migration: failed };
    }
    if (!sameJson(properties, node.properties)) {
      saveChange(store, node, stamp, { properties }, 'migrated');
      converted++;
    }
    afterId = node.id;
    done++;
  }
  const finished = nodes.length < command.nodesMax && (lastNodeId === undefined || store.nodesOfTypeAfter(command.typeName, lastNodeId, 1, migrationBatchBytesMax).length === 0);
  if (finished) {
    if (migration.fromVersion !== null) store.setSchemaState(command.typeName, migration.fromVersion, 'superseded');
    store.setSchemaState(command.typeName, target.version, 'active');
  }
  const next: SchemaMigration = {
    ...migration,
    state: finished ? 'done' : 'running',
    afterId,
    nodesDone: done,
    nodesConverted: converted,
    batches: migration.batches + 1,
    updatedAt: command.time,
    finishedAt: finished ? command.time : null,
  };
  store.saveSchemaMigration(next);
  return { migration: next };
}

export function applyResolveSchemaMigration(store: ContentStore, command: ResolveSchemaMigrationCommand): SchemaResult {
  const migration = store.schemaMigration(command.typeName);
  const allowed = command.action === 'retry' ? migration?.state === 'failed' : migrationPending(migration);
  if (!allowed) {
    throw new ConclaveError('SCHEMA_MIGRATION_NOT_FOUND', `The type ${command.typeName} has no ${command.action === 'retry' ? 'failed' : 'running or failed'} migration to ${command.action}.`, {
      type: command.typeName,
      migration: migration?.state ?? null,
    });
  }
  const next: SchemaMigration =
    command.action === 'retry'
      ? { ...migration!, state: 'running', failure: null, updatedAt: command.time }
      : { ...migration!, state: 'abandoned', updatedAt: command.time, finishedAt: command.time };
  if (command.action === 'abandon') store.setSchemaState(command.typeName, migration!.toVersion, 'abandoned');
  store.saveSchemaMigration(next);
  return { migration: next };
}

/**
 * The schema checks of a content write against the state this node has applied, before it is proposed: a write a
 * schema refuses gets its SCHEMA_VIOLATION from the node that received it, without a journal entry. apply() checks
 * again against the state the entry meets (a schema committed in between decides there). A write whose target this
 * node does not see (not applied here yet, or made by an earlier operation of the same batch) is left to apply().
 */
export function precheckSchemas(store: ContentStore, command: Command): void {
  // Most repositories have no schema: then no write reads its node, or its parent, a second time here.
  if (!store.schemasInUse()) return;
  switch (command.type) {
    case 'put': {
      const existing = store.nodeByPath(command.path);
      const type = command.nodeType ?? existing?.type ?? defaultNodeType;
      if (existing === undefined) {
        const parent = store.nodeByPath(parentPath(command.path));
        if (parent !== undefined) checkPlacement(store, parent, command.path, type);
      }
      conformingWrite(store, { path: command.path, type, properties: command.properties });
      return;
    }
    case 'patch': {
      const node = store.nodeByPath(command.path);
      if (node === undefined) return;
      const patched = applyMergePatch(patchBase(store, node), command.patch);
      if (isPlainObject(patched)) conformingWrite(store, { path: node.path, type: node.type, properties: patched });
      return;
    }
    case 'move': {
      const node = store.nodeByPath(command.from);
      const parent = store.nodeByPath(parentPath(command.to));
      if (node !== undefined && parent !== undefined && parent.id !== node.parentId) checkPlacement(store, parent, command.to, node.type);
      return;
    }
    case 'batch': {
      // An operation on a path an earlier one touched (or under it) meets a state this node cannot see yet: apply() decides.
      const touched: string[] = [];
      const touches = (path: string) => touched.some((t) => path === t || path.startsWith(t === '/' ? '/' : `${t}/`) || t.startsWith(path === '/' ? '/' : `${path}/`));
      command.operations.forEach((operation, i) => {
        const paths = operation.type === 'move' ? [operation.from, operation.to] : [operation.path];
        if (paths.some(touches)) {
          touched.push(...paths);
          return;
        }
        touched.push(...paths);
        try {
          precheckSchemas(store, { ...operation, time: command.time, user: command.user } as Command);
        } catch (err) {
          if (!(err instanceof ConclaveError)) throw err;
          throw new ConclaveError(err.code, `Operation ${i} of the batch (${operation.type}) was refused, so none was applied: ${err.message}`, { ...err.details, operation: i });
        }
      });
      return;
    }
    default:
      return;
  }
}
