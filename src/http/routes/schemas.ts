import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { schemaNotFound } from '../../content/applySchemas.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { parseLimit } from '../../content/query.js';
import { parseSchemaDefinition, parseSchemaTypeName } from '../../content/schema.js';
import { migrationPending, schemaEtag, type SchemaMigration, type StoredSchema } from '../../content/schemaState.js';
import { everyMemberAtLeast, type ClusterState } from '../../core/clusterState.js';
import { ConclaveError } from '../../errors/catalogue.js';
import type { Committed } from '../../node/clusterRuntime.js';
import { writeOriginOf } from '../writeOrigin.js';
import { isTrue, parsePreconditions } from '../representation.js';
import { readFilter, viewerOf } from '../readAccess.js';

/**
 * The first release that knows schemas. A member of an older one would stop at a schema entry it cannot apply, so
 * schema writes wait until every member runs this one or newer (UPGRADE_IN_PROGRESS); a repository without schemas
 * behaves as before, so nothing else waits.
 */
export const schemasSinceVersion = '0.5.0';

/** Refuses a schema write while a member could not apply it: checked by the route, and by the master when forwarded. */
export function checkSchemasAvailable(state: ClusterState): void {
  if (!everyMemberAtLeast(state, schemasSinceVersion)) {
    throw new ConclaveError('UPGRADE_IN_PROGRESS', `Schemas need every member to run ${schemasSinceVersion} or newer; finish the rolling upgrade first.`, {
      needs: schemasSinceVersion,
      members: state.nodes.map((n) => ({ name: n.name, version: n.version })),
    });
  }
}

export function schemaJson(schema: StoredSchema) {
  return {
    type: schema.typeName,
    version: schema.version,
    state: schema.state,
    definition: schema.definition,
    index: schema.index,
    createdAt: schema.createdAt,
    createdBy: schema.createdBy,
  };
}

/**
 * A migration with its progress: done of total, the rate since it started (nodes per second, by the entries' own
 * times) and, while it runs, an estimate of the seconds left at that rate.
 */
export function migrationJson(migration: SchemaMigration, visible: ((path: string) => boolean) | null = null) {
  const seconds = (Date.parse(migration.updatedAt) - Date.parse(migration.startedAt)) / 1000;
  const rate = seconds > 0 ? migration.nodesDone / seconds : null;
  const left = Math.max(0, migration.nodesTotal - migration.nodesDone);
  return {
    type: migration.typeName,
    fromVersion: migration.fromVersion,
    toVersion: migration.toVersion,
    state: migration.state,
    nodesDone: migration.nodesDone,
    nodesConverted: migration.nodesConverted,
    nodesTotal: migration.nodesTotal,
    batches: migration.batches,
    nodesPerSecond: rate === null ? null : Math.round(rate * 10) / 10,
    secondsLeftEstimate: migration.state === 'running' && rate !== null && rate > 0 ? Math.ceil(left / rate) : null,
    startedAt: migration.startedAt,
    startedBy: migration.startedBy,
    updatedAt: migration.updatedAt,
    finishedAt: migration.finishedAt,
    // A node the reader may not read is not named, not even as the one a migration could not convert.
    // (Its message may name the node's children: a reader whose view is filtered gets the rules that failed instead.)
    failure:
      migration.failure === null || visible === null
        ? migration.failure
        : visible(migration.failure.path)
          ? { ...migration.failure, message: `The node could not be converted (${[...new Set(migration.failure.violations.map((v) => v.rule))].join(', ')}).` }
          : { hidden: true, message: 'A node you may not read could not be converted.' },
  };
}

type TypeRequest = FastifyRequest<{ Params: { type: string }; Querystring: Record<string, string | string[]> }>;

function bodyObject(request: FastifyRequest): Record<string, unknown> {
  if (!isPlainObject(request.body)) throw new ConclaveError('INVALID_REQUEST', 'The body must be a JSON object.');
  return request.body as Record<string, unknown>;
}

function sendSchemaResult(reply: FastifyReply, committed: Committed, status: number) {
  reply.header('X-Conclave-Index', committed.index);
  const { schema, migration } = committed.result;
  if (schema !== undefined && schema.state === 'active') reply.header('ETag', schemaEtag(schema));
  return reply.status(status).send({
    ...(schema === undefined ? {} : { schema: schemaJson(schema) }),
    ...(migration === undefined ? {} : { migration: migrationJson(migration) }),
  });
}

/**
 * Schemas (src/content/schema.ts; docs/http-api.md "Schemas"):
 *   GET    /api/v1/schemas[?limit=&cursor=]            the schemas in force and pending, by type, and the policy
 *   GET    /api/v1/schemas/{type}[?versions=true]      the type's schema in force (and pending), or every version
 *   PUT    /api/v1/schemas/{type}  {definition}        the next version (If-Match / If-None-Match: *); 202 when a
 *                                                      migration of the type's nodes starts
 *   DELETE /api/v1/schemas/{type}                      no schema in force any more (If-Match)
 *   GET    /api/v1/schemas/{type}/migration            the type's latest migration and its progress
 *   POST   /api/v1/schemas/{type}/migration {"action": "retry" | "abandon"}
 *   GET|PUT /api/v1/schema-policy {"schemasRequired"}  whether every type needs a schema
 */
export async function schemaRoutes(app: FastifyInstance): Promise<void> {
  const { repository, runtime, config } = app.conclave;
  const schemas = repository.content.schemas;
  const admin = { config: { permission: 'admin' as const, forwardsCommand: true as const } };

  app.get('/api/v1/schemas', { config: { permission: 'read', query: ['limit', 'cursor'] } }, async (request: FastifyRequest<{ Querystring: Record<string, string | string[]> }>) => {
    const limit = parseLimit(request.query['limit'], config.content.pageSizeDefault, config.content.pageSizeMax);
    const cursor = request.query['cursor'];
    const after = cursor === undefined ? '' : typeof cursor === 'string' ? parseSchemaTypeName(cursor) : parseSchemaTypeName(undefined);
    // In force and pending rows, by type: one more than a page of types says whether another page follows.
    const rows = schemas.inForcePage(after, 2 * limit + 2);
    const types = [...new Set(rows.map((s) => s.typeName))];
    const page = types.slice(0, limit);
    const visible = readFilter(repository.content, viewerOf(request));
    const items = page.map((type) => typeJson(rows.filter((s) => s.typeName === type), schemas.migration(type), visible));
    return { schemasRequired: schemas.schemasRequired(), items, nextCursor: types.length > limit ? page.at(-1)! : null };
  });

  app.get('/api/v1/schemas/:type', { config: { permission: 'read', query: ['versions', 'limit', 'cursor'] } }, async (request: TypeRequest, reply) => {
    const type = parseSchemaTypeName(request.params.type);
    if (isTrue(request.query['versions'], 'versions')) {
      const limit = parseLimit(request.query['limit'], config.content.pageSizeDefault, config.content.pageSizeMax);
      const cursor = request.query['cursor'];
      const before = cursor === undefined ? Number.MAX_SAFE_INTEGER : Number(cursor);
      if (typeof cursor !== 'undefined' && (typeof cursor !== 'string' || !/^[1-9][0-9]{0,15}$/.test(cursor) || !Number.isSafeInteger(before))) {
        throw new ConclaveError('INVALID_CURSOR', 'The cursor of a schema\'s versions is the nextCursor a page of them gave.');
      }
      const page = schemas.versionsPage(type, before, limit + 1);
      const items = page.slice(0, limit);
      return { type, items: items.map(schemaJson), nextCursor: page.length > limit ? String(items.at(-1)!.version) : null };
    }
    const active = schemas.active(type);
    const migration = schemas.migration(type);
    const pending = migrationPending(migration) ? schemas.version(type, migration!.toVersion) : undefined;
    const current = [active, pending].filter((s) => s !== undefined);
    if (current.length === 0) throw schemaNotFound(type);
    if (active !== undefined) reply.header('ETag', schemaEtag(active));
    return typeJson(current, migration, readFilter(repository.content, viewerOf(request)));
  });

  app.put('/api/v1/schemas/:type', admin, async (request: TypeRequest, reply) => {
    const type = parseSchemaTypeName(request.params.type);
    const definition = parseSchemaDefinition(request.body);
    checkSchemasAvailable(runtime.clusterState());
    const committed = await repository.putSchema(type, definition, parsePreconditions(request.headers), writeOriginOf(request, 'admin'));
    const { schema } = committed.result;
    const status = schema?.state === 'pending' ? 202 : schema?.version === 1 && schema.index === committed.index ? 201 : 200;
    return sendSchemaResult(reply, committed, status);
  });

  app.delete('/api/v1/schemas/:type', admin, async (request: TypeRequest, reply) => {
    const type = parseSchemaTypeName(request.params.type);
    checkSchemasAvailable(runtime.clusterState());
    const committed = await repository.deleteSchema(type, parsePreconditions(request.headers), writeOriginOf(request, 'admin'));
    return sendSchemaResult(reply, committed, 200);
  });

  app.get('/api/v1/schemas/:type/migration', { config: { permission: 'read' } }, async (request: TypeRequest) => {
    const type = parseSchemaTypeName(request.params.type);
    const migration = schemas.migration(type);
    if (migration === undefined) throw new ConclaveError('SCHEMA_MIGRATION_NOT_FOUND', `The type ${type} has never been migrated.`, { type, migration: null });
    return migrationJson(migration, readFilter(repository.content, viewerOf(request)));
  });

  app.post('/api/v1/schemas/:type/migration', admin, async (request: TypeRequest, reply) => {
    const type = parseSchemaTypeName(request.params.type);
    const body = bodyObject(request);
    const unknown = Object.keys(body).filter((k) => k !== 'action');
    if (unknown.length > 0) throw new ConclaveError('INVALID_REQUEST', `Unknown field(s) ${unknown.join(', ')}; expected action.`);
    const action = body['action'];
    if (action !== 'retry' && action !== 'abandon') throw new ConclaveError('INVALID_REQUEST', '"action" must be "retry" or "abandon".', { field: 'action' });
    checkSchemasAvailable(runtime.clusterState());
    const committed = await repository.resolveSchemaMigration(type, action, writeOriginOf(request, 'admin'));
    return sendSchemaResult(reply, committed, 200);
  });

  app.get('/api/v1/schema-policy', { config: { permission: 'read' } }, async () => ({ schemasRequired: schemas.schemasRequired() }));

  app.put('/api/v1/schema-policy', admin, async (request, reply) => {
    const body = bodyObject(request);
    const unknown = Object.keys(body).filter((k) => k !== 'schemasRequired');
    if (unknown.length > 0) throw new ConclaveError('INVALID_REQUEST', `Unknown field(s) ${unknown.join(', ')}; expected schemasRequired.`);
    if (typeof body['schemasRequired'] !== 'boolean') throw new ConclaveError('INVALID_REQUEST', '"schemasRequired" must be true or false.', { field: 'schemasRequired' });
    checkSchemasAvailable(runtime.clusterState());
    const committed = await repository.setSchemaPolicy(body['schemasRequired'], writeOriginOf(request, 'admin'));
    reply.header('X-Conclave-Index', committed.index);
    return { schemasRequired: committed.result.schemasRequired };
  });
}

/** A type's schema as the reads answer: the version in force, the pending one and its migration while one runs. */
function typeJson(current: readonly StoredSchema[], migration: SchemaMigration | undefined, visible: ((path: string) => boolean) | null) {
  const active = current.find((s) => s.state === 'active');
  const pending = current.find((s) => s.state === 'pending');
  const type = (active ?? pending)!.typeName;
  return {
    type,
    ...(active === undefined ? { version: null, definition: null } : { ...schemaJson(active), etag: schemaEtag(active) }),
    pending: pending === undefined ? null : schemaJson(pending),
    migration: migrationPending(migration) ? migrationJson(migration!, visible) : null,
  };
}
