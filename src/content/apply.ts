import { ConclaveError, invariant } from '../errors/catalogue.js';
import type {
  BatchCommand,
  BootstrapCommand,
  Command,
  DeleteBinaryCommand,
  DeleteCommand,
  DeleteUserCommand,
  MoveCommand,
  PatchCommand,
  Preconditions,
  PruneChangesCommand,
  PruneVersionsCommand,
  PutCommand,
  PutUserCommand,
  ReorderCommand,
  RestoreCommand,
  RotateTokenKeyCommand,
  SetBinaryCommand,
  StartHistoryCommand,
} from './commands.js';
import { requireHistory, versionNotFound, versionsPerNodeMin } from './history.js';
import { applySetAccess, requireAccess, requireSubtreeWrite, requireWritableNode } from './applyAccess.js';
import {
  applyDeleteSchema,
  applyMigrateSchema,
  applyPutSchema,
  applyResolveSchemaMigration,
  applySetSchemaPolicy,
  checkOwnChildren,
  checkPlacement,
  conformingWrite,
  patchBase,
  restoredProperties,
  type SchemaResult,
} from './applySchemas.js';
import { changeOf, saveChange } from './saveChange.js';
import { batchOperationTypes, legacyTokenKeyId } from './commands.js';
import { applyMergePatch, isPlainObject } from './mergePatch.js';
import { checkPreconditions } from './preconditions.js';
import { defaultNodeType, rootNodeType, type ContentNode, type JsonObject, type User } from './model.js';
import { pathBytesMax, pathDepthMax } from './limits.js';
import { baseName, isSameOrDescendant, joinPath, parentPath, rootPath, utf8Bytes } from './paths.js';
import type { ContentStore } from './store.js';
import { checkBinaryCount, checkPropertiesSize } from './validate.js';

/**
 * The outcome of applying one entry. Refusals (a failed precondition, a missing parent) are not results: apply()
 * throws a ConclaveError for them and the caller rolls back that entry's changes, so an entry either changes the
 * state completely or not at all — on every node alike, since the refusal depends only on the state it meets.
 */
export interface ApplyResult extends SchemaResult {
  readonly node?: ContentNode;
  readonly user?: Omit<User, 'passwordHash'>;
  /** For put and putUser: whether the node or user was created (201) or replaced (200). */
  readonly created?: boolean;
  /** For deletes: how many nodes went, the node itself included. */
  readonly deletedCount?: number;
  /** For a batch: each operation's result, in order. */
  readonly operations?: readonly ApplyResult[];
  /** For setSearchPolicy: how many nodes were indexed again. */
  readonly reindexed?: number;
}

type Handler<K extends Command['type']> = (store: ContentStore, command: Extract<Command, { type: K }>) => ApplyResult;

// The compiler holds this map exhaustive: a new command type does not build until it has a handler.
const handlers: { [K in Command['type']]: Handler<K> } = {
  bootstrap: applyBootstrap,
  putSchema: applyPutSchema,
  deleteSchema: applyDeleteSchema,
  setSchemaPolicy: applySetSchemaPolicy,
  setAccess: applySetAccess,
  setSearchPolicy: (store, command) => {
    invariant(typeof command.indexUntypedNodes === 'boolean', 'setSearchPolicy without a boolean');
    return { reindexed: store.setSearchIndexesUntyped(command.indexUntypedNodes) };
  },
  migrateSchema: applyMigrateSchema,
  resolveSchemaMigration: applyResolveSchemaMigration,
  rotateTokenKey: applyRotateTokenKey,
  pruneChanges: applyPruneChanges,
  startHistory: applyStartHistory,
  pruneVersions: applyPruneVersions,
  restore: applyRestore,
  put: applyPut,
  patch: applyPatch,
  delete: applyDelete,
  move: applyMove,
  reorder: applyReorder,
  setBinary: applySetBinary,
  deleteBinary: applyDeleteBinary,
  putUser: applyPutUser,
  deleteUser: applyDeleteUser,
  batch: applyBatch,
};

export function applyCommand(store: ContentStore, command: Command): ApplyResult {
  const handler = handlers[command.type] as Handler<typeof command.type>;
  invariant(handler !== undefined, `no handler for command type ${String(command.type)}`);
  return handler(store, command as never);
}

function applyBootstrap(store: ContentStore, command: BootstrapCommand): ApplyResult {
  // Two masters in a row may each propose the bootstrap (the first's entry can still commit after it lost its
  // mastership): the second is refused, deterministically, like any other conflicting write.
  if (store.nodeByPath(rootPath) !== undefined) throw new ConclaveError('DESTINATION_EXISTS', 'The repository already exists.', { path: rootPath });
  const root: ContentNode = {
    id: command.rootId,
    path: rootPath,
    name: '',
    parentId: null,
    position: 0,
    type: rootNodeType,
    properties: {},
    binaries: {},
    version: 1,
    createdAt: command.time,
    createdBy: 'system',
    modifiedAt: command.time,
    modifiedBy: 'system',
  };
  if (command.history !== undefined) {
    checkRetention(command.history);
    store.startHistory(command.history, command.time);
  }
  store.insertNode(root, { op: 'created' });
  store.recordChange(changeOf('created', root, { user: 'system', time: command.time }));
  store.setTokenKeyId(command.tokenKeyId ?? legacyTokenKeyId);
  store.putUser({
    name: 'admin',
    passwordHash: command.adminPasswordHash,
    roles: ['admin'],
    version: 1,
    createdAt: command.time,
    modifiedAt: command.time,
  });
  return { node: root };
}

/**
 * Each operation in order, against the state the ones before it left. The first refusal ends the batch with that
 * operation's error, named by its position (details.operation) — and the caller rolls the whole entry back, so the
 * operations before it leave no trace either.
 */
function applyBatch(store: ContentStore, command: BatchCommand): ApplyResult {
  const results: ApplyResult[] = [];
  command.operations.forEach((operation, i) => {
    invariant(batchOperationTypes.has(operation.type), `a batch holds a ${String(operation.type)} operation`);
    try {
      results.push(applyCommand(store, { ...operation, time: command.time, user: command.user } as Command));
    } catch (err) {
      if (!(err instanceof ConclaveError)) throw err;
      throw new ConclaveError(err.code, `Operation ${i} of the batch (${operation.type}) was refused, so none was applied: ${err.message}`, { ...err.details, operation: i });
    }
  });
  return { operations: results };
}

function applyRotateTokenKey(store: ContentStore, command: RotateTokenKeyCommand): ApplyResult {
  store.setTokenKeyId(command.keyId);
  return {};
}

function applyPruneChanges(store: ContentStore, command: PruneChangesCommand): ApplyResult {
  invariant(Number.isSafeInteger(command.through) && command.through >= 0, `pruneChanges through ${String(command.through)}`);
  store.pruneChanges(command.through);
  return {};
}

/** A retention below the minimum never reaches the journal (settings and routes refuse it). */
function checkRetention(retention: { readonly versionsPerNodeMax: number }): void {
  invariant(
    Number.isSafeInteger(retention.versionsPerNodeMax) && retention.versionsPerNodeMax >= versionsPerNodeMin,
    `history keeps ${String(retention.versionsPerNodeMax)} versions per node`,
  );
}

function applyStartHistory(store: ContentStore, command: StartHistoryCommand): ApplyResult {
  checkRetention(command);
  store.startHistory({ versionsPerNodeMax: command.versionsPerNodeMax }, command.time);
  return {};
}

function applyPruneVersions(store: ContentStore, command: PruneVersionsCommand): ApplyResult {
  checkRetention(command);
  invariant(Number.isSafeInteger(command.versionsMax) && command.versionsMax >= 1, `pruneVersions of ${String(command.versionsMax)} versions`);
  // Proposed only once history started; one that meets a state without it (a proposal from before a snapshot
  // install of such a state cannot exist, but a stale master's could) changes nothing, on every node alike.
  if (store.historyRetention() === undefined) return {};
  store.setHistoryRetention({ versionsPerNodeMax: command.versionsPerNodeMax });
  store.pruneVersions(command.supersededBefore, command.versionsMax);
  return {};
}

/**
 * Version `command.version` of node `command.id` made current as a new version. A live node keeps its place and
 * takes the version's type, properties and binaries; a deleted one is re-created under its id at `command.path`
 * (where it was, unless the client names another place), last among its new siblings.
 */
function applyRestore(store: ContentStore, command: RestoreCommand): ApplyResult {
  requireHistory(store.historyRetention());
  const source = store.nodeVersion(command.id, command.version);
  if (source === undefined) throw versionNotFound(command.id, command.version);
  const live = store.nodeById(command.id);
  if (live !== undefined) requireWritableNode(store, command.user, live.path);
  else requireAccess(store, command.user, command.path, 'write');
  if (live !== undefined) {
    checkPreconditions(live, command, live.path);
    if (live.path === rootPath && source.node.type !== rootNodeType) throw new ConclaveError('ROOT_IMMUTABLE', 'The root node keeps the type "root".');
    // The version comes back under the schemas in force now: an earlier state they refuse is refused like any write.
    const properties = conformingWrite(store, { path: live.path, type: source.node.type, properties: restoredProperties(store, source.node.type, source.node.properties) });
    if (source.node.type !== live.type) checkTypeChange(store, live, source.node.type, command.user);
    const state = { type: source.node.type, properties, binaries: source.node.binaries };
    return { ...saveChange(store, live, command, state, 'updated', {}, { made: { op: 'restored', restoredFrom: command.version } }), created: false };
  }
  checkPreconditions(store.nodeByPath(command.path), command, command.path);
  if (command.path === rootPath) throw new ConclaveError('ROOT_IMMUTABLE', 'Nothing can be restored onto the root.');
  if (store.nodeByPath(command.path) !== undefined) {
    throw new ConclaveError('DESTINATION_EXISTS', `A node already exists at ${command.path}; restore the deleted node elsewhere, or move that one first.`, {
      path: command.path,
    });
  }
  const parent = requireParent(store, command.path);
  checkPlacement(store, parent, command.path, source.node.type);
  const properties = conformingWrite(store, { path: command.path, type: source.node.type, properties: restoredProperties(store, source.node.type, source.node.properties) });
  const last = store.lastVersionNumber(command.id);
  invariant(last !== undefined && last >= command.version, `node ${command.id} has version ${command.version} but no last version`);
  const node: ContentNode = {
    ...source.node,
    properties,
    path: command.path,
    name: baseName(command.path),
    parentId: parent.id,
    position: store.lastChildPosition(parent.id) + 1,
    version: last + 1,
    modifiedAt: command.time,
    modifiedBy: command.user,
  };
  store.insertNode(node, { op: 'restored', restoredFrom: command.version });
  store.recordChange(changeOf('created', node, command));
  return { node, created: true };
}

function requireNode(store: ContentStore, path: string): ContentNode {
  const node = store.nodeByPath(path);
  if (node === undefined) {
    throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}.`, { path });
  }
  return node;
}

function requireParent(store: ContentStore, path: string): ContentNode {
  const parent = store.nodeByPath(parentPath(path));
  if (parent === undefined) {
    throw new ConclaveError('PARENT_NOT_FOUND', `The parent ${parentPath(path)} of ${path} does not exist; create it first.`, {
      path,
      parent: parentPath(path),
    });
  }
  return parent;
}

/** The existing node a write targets, once its preconditions hold. */
function targetOf(store: ContentStore, path: string, preconditions: Preconditions): ContentNode {
  const existing = store.nodeByPath(path);
  checkPreconditions(existing, preconditions, path);
  return existing ?? requireNode(store, path);
}

function applyPut(store: ContentStore, command: PutCommand): ApplyResult {
  // The root's type is the root's alone: a node typed "root" elsewhere would pass for the root (no schema, none needed).
  if (command.nodeType === rootNodeType && command.path !== rootPath) {
    throw new ConclaveError('INVALID_REQUEST', `The type "${rootNodeType}" belongs to the root node; give ${command.path} another.`, { field: 'type' });
  }
  requireAccess(store, command.user, command.path, 'write');
  const existing = store.nodeByPath(command.path);
  checkPreconditions(existing, command, command.path);
  if (existing !== undefined) {
    const type = command.nodeType ?? existing.type;
    if (existing.path === rootPath && type !== rootNodeType) {
      throw new ConclaveError('ROOT_IMMUTABLE', 'The root node keeps the type "root"; only its properties can change.');
    }
    const properties = conformingWrite(store, { path: command.path, type, properties: command.properties });
    if (type !== existing.type) checkTypeChange(store, existing, type, command.user);
    return { ...saveChange(store, existing, command, { type, properties }, 'updated'), created: false };
  }
  const parent = requireParent(store, command.path);
  const type = command.nodeType ?? defaultNodeType;
  checkPlacement(store, parent, command.path, type);
  const properties = conformingWrite(store, { path: command.path, type, properties: command.properties });
  // Ids are drawn at random where a write is received; one already used (by a node, or by one history keeps) can only
  // come from a forged command, and is refused like any write that meets the wrong state: a row of history under
  // that id would collide with the new node's versions.
  if (store.nodeById(command.newId) !== undefined || store.lastVersionNumber(command.newId) !== undefined) {
    throw new ConclaveError('NODE_ID_IN_USE', `The id ${command.newId} belongs to another node, or to one the history keeps.`, { id: command.newId });
  }
  const node: ContentNode = {
    id: command.newId,
    path: command.path,
    name: baseName(command.path),
    parentId: parent.id,
    position: store.lastChildPosition(parent.id) + 1,
    type,
    properties,
    binaries: {},
    version: 1,
    createdAt: command.time,
    createdBy: command.user,
    modifiedAt: command.time,
    modifiedBy: command.user,
  };
  store.insertNode(node, { op: 'created' });
  store.recordChange(changeOf('created', node, command));
  return { node, created: true };
}

/** A node whose type changes must fit under its parent as the new type, and its children under the new type. */
function checkTypeChange(store: ContentStore, node: ContentNode, type: string, user: string): void {
  const parent = node.parentId === null ? undefined : store.nodeById(node.parentId);
  if (parent !== undefined) checkPlacement(store, parent, node.path, type);
  checkOwnChildren(store, node, type, user);
}

function applyPatch(store: ContentStore, command: PatchCommand): ApplyResult {
  requireWritableNode(store, command.user, command.path);
  const node = targetOf(store, command.path, command);
  const patched = applyMergePatch(patchBase(store, node), command.patch);
  invariant(isPlainObject(patched), 'a merge patch of an object with an object is an object');
  const properties = conformingWrite(store, { path: node.path, type: node.type, properties: patched as JsonObject });
  checkPropertiesSize(properties);
  return saveChange(store, node, command, { properties }, 'updated');
}

function applyDelete(store: ContentStore, command: DeleteCommand): ApplyResult {
  if (command.path === rootPath) {
    throw new ConclaveError('ROOT_IMMUTABLE', 'The root node cannot be deleted; delete its children instead.');
  }
  requireWritableNode(store, command.user, command.path);
  if (command.recursive) requireSubtreeWrite(store, command.user, command.path);
  const node = targetOf(store, command.path, command);
  if (!command.recursive && store.hasChildren(node.id)) {
    throw new ConclaveError('NODE_HAS_CHILDREN', `${command.path} has children; add ?recursive=true to delete the subtree.`, {
      path: command.path,
    });
  }
  // The node first, then its descendants: every path that stops serving content is named.
  store.recordChange(changeOf('deleted', node, command));
  store.recordDescendantChanges(node.path, 'deleted', { by: command.user, at: command.time });
  store.keepDeletedVersions(node.path, { by: command.user, at: command.time });
  const deletedCount = store.deleteSubtree(node);
  invariant(deletedCount >= 1, 'a delete removes at least the node itself');
  return { node, deletedCount };
}

/** Places `nodeId` among `siblings` (which must not contain it) before the sibling named `before`, or last. */
function positionsWith(siblings: ContentNode[], nodeId: string, before: string | null, parentPathText: string) {
  const ids = siblings.map((s) => s.id);
  let at = ids.length;
  if (before !== null) {
    at = siblings.findIndex((s) => s.name === before);
    if (at < 0) {
      throw new ConclaveError('NODE_NOT_FOUND', `"before" names ${joinPath(parentPathText, before)}, which does not exist.`, {
        path: joinPath(parentPathText, before),
      });
    }
  }
  ids.splice(at, 0, nodeId);
  return ids.map((id, position) => ({ id, position }));
}

/** A move must not give any descendant a path the API would refuse: too deep or too long. */
function checkMovedPaths(store: ContentStore, from: string, to: string): void {
  const extent = store.subtreeExtent(from);
  const depthOf = (path: string) => path.split('/').length - 1;
  const depth = extent.depthMax - depthOf(from) + depthOf(to);
  const bytes = extent.bytesMax - utf8Bytes(from) + utf8Bytes(to);
  if (depth > pathDepthMax || bytes > pathBytesMax) {
    throw new ConclaveError(
      'INVALID_PATH',
      `Moving ${from} to ${to} would make paths ${depth} levels deep and up to ${bytes} bytes long; the limits are ${pathDepthMax} levels and ${pathBytesMax} bytes.`,
      { from, to },
    );
  }
}

function applyMove(store: ContentStore, command: MoveCommand): ApplyResult {
  if (command.from === rootPath || command.to === rootPath) {
    throw new ConclaveError('ROOT_IMMUTABLE', 'The root node cannot be moved, and nothing can be moved onto it.');
  }
  requireWritableNode(store, command.user, command.from);
  requireSubtreeWrite(store, command.user, command.from);
  requireAccess(store, command.user, command.to, 'write');
  const node = targetOf(store, command.from, command);
  if (command.to !== command.from && isSameOrDescendant(command.to, command.from)) {
    throw new ConclaveError('MOVE_INTO_DESCENDANT', `${command.from} cannot be moved below itself (to ${command.to}).`, {
      from: command.from,
      to: command.to,
    });
  }
  if (command.to !== command.from && store.nodeByPath(command.to) !== undefined) {
    throw new ConclaveError('DESTINATION_EXISTS', `A node already exists at ${command.to}.`, { path: command.to });
  }
  const parent = requireParent(store, command.to);
  if (parent.id !== node.parentId) checkPlacement(store, parent, command.to, node.type);
  checkMovedPaths(store, command.from, command.to);
  if (command.before === baseName(command.to) && parent.id === node.parentId) {
    throw new ConclaveError('INVALID_REQUEST', '"before" cannot name the node being moved.');
  }
  const siblings = store.children(parent.id).filter((s) => s.id !== node.id);
  const positions = positionsWith(siblings, node.id, command.before, parent.path);
  // The moved node's event comes first and its descendants' after, under their new paths, as for a delete. A move
  // in place (a new position among the same siblings) is a `moved` event whose `from` is its own path.
  const moving = command.to !== command.from;
  const stamp = { by: command.user, at: command.time };
  // The version the move replaces keeps the path it had: superseded before the paths change.
  store.supersedeVersion(node, command.time);
  if (moving) store.movePaths(command.from, command.to);
  store.setPositions(positions.filter((p) => p.id !== node.id));
  const result = saveChange(
    store,
    node,
    command,
    { path: command.to, name: baseName(command.to), parentId: parent.id, position: positions.find((p) => p.id === node.id)?.position ?? 0 },
    'moved',
    { from: command.from },
    { superseded: true },
  );
  if (moving) store.recordDescendantChanges(command.to, 'moved', stamp, command.from);
  return result;
}

function applyReorder(store: ContentStore, command: ReorderCommand): ApplyResult {
  requireWritableNode(store, command.user, command.path);
  const node = targetOf(store, command.path, command);
  const children = store.children(node.id);
  const byName = new Map(children.map((c) => [c.name, c]));
  const named = new Set(command.order);
  if (named.size !== command.order.length || named.size !== children.length || !command.order.every((n) => byName.has(n))) {
    throw new ConclaveError(
      'INVALID_ORDER',
      `The order must name each of the ${children.length} children of ${command.path} exactly once.`,
      { path: command.path, children: children.length },
    );
  }
  store.setPositions(command.order.map((name, position) => ({ id: byName.get(name)!.id, position })));
  return saveChange(store, node, command, {}, 'updated');
}

function applySetBinary(store: ContentStore, command: SetBinaryCommand): ApplyResult {
  requireWritableNode(store, command.user, command.path);
  const node = targetOf(store, command.path, command);
  const binaries = { ...node.binaries, [command.property]: command.binary };
  checkBinaryCount(Object.keys(binaries).length);
  return saveChange(store, node, command, { binaries }, 'binary-set', { property: command.property });
}

function applyDeleteBinary(store: ContentStore, command: DeleteBinaryCommand): ApplyResult {
  requireWritableNode(store, command.user, command.path);
  const node = targetOf(store, command.path, command);
  if (!Object.hasOwn(node.binaries, command.property)) {
    throw new ConclaveError('BINARY_NOT_FOUND', `${command.path} has no binary property "${command.property}".`, {
      path: command.path,
      property: command.property,
    });
  }
  const binaries = Object.fromEntries(Object.entries(node.binaries).filter(([name]) => name !== command.property));
  return saveChange(store, node, command, { binaries }, 'binary-removed', { property: command.property });
}

function publicUser(user: User): Omit<User, 'passwordHash'> {
  return { name: user.name, roles: user.roles, version: user.version, createdAt: user.createdAt, modifiedAt: user.modifiedAt };
}

function applyPutUser(store: ContentStore, command: PutUserCommand): ApplyResult {
  const existing = store.userByName(command.name);
  if (existing !== undefined) {
    if (command.createOnly) {
      throw new ConclaveError('PRECONDITION_FAILED', `The user ${command.name} already exists.`, { name: command.name });
    }
    if (command.roles !== undefined && !command.roles.includes('admin')) checkNotLastAdmin(store, existing);
    const user: User = {
      ...existing,
      passwordHash: command.passwordHash ?? existing.passwordHash,
      roles: command.roles ?? existing.roles,
      version: existing.version + 1,
      modifiedAt: command.time,
    };
    store.putUser(user);
    return { user: publicUser(user), created: false };
  }
  if (command.passwordHash === undefined || command.roles === undefined) {
    throw new ConclaveError('INVALID_REQUEST', `A new user needs a password and roles (user ${command.name}).`);
  }
  const user: User = {
    name: command.name,
    passwordHash: command.passwordHash,
    roles: command.roles,
    version: 1,
    createdAt: command.time,
    modifiedAt: command.time,
  };
  store.putUser(user);
  return { user: publicUser(user), created: true };
}

/** Nobody could manage users any more if the last admin went; refuse rather than lock everyone out. */
function checkNotLastAdmin(store: ContentStore, user: User): void {
  if (user.roles.includes('admin') && store.adminCount() <= 1) {
    throw new ConclaveError('LAST_ADMIN', `${user.name} is the last admin; make another user admin first.`, {
      name: user.name,
    });
  }
}

function applyDeleteUser(store: ContentStore, command: DeleteUserCommand): ApplyResult {
  const existing = store.userByName(command.name);
  if (existing === undefined) {
    throw new ConclaveError('USER_NOT_FOUND', `No user named ${command.name} exists.`, { name: command.name });
  }
  checkNotLastAdmin(store, existing);
  store.deleteUser(command.name);
  return { user: publicUser(existing) };
}
