import { hasAccess, type AccessPermission, type AccessSubject } from './access.js';
import type { SetAccessCommand } from './commands.js';
import { ConclaveError } from '../errors/catalogue.js';
import type { ContentNode } from './model.js';
import type { ContentStore } from './store.js';

/**
 * Access control as apply() enforces it on writes: against the entries and the writer's roles in the state the
 * entry meets, so every node refuses exactly the same writes. A refusal is one FORBIDDEN that names no node: the
 * writer may not be allowed to know what lies where it wanted to write.
 */

/** The writer of a command, as the state knows it (a user deleted since has no roles: it may do nothing). */
export function subjectOf(store: ContentStore, user: string): AccessSubject {
  return { name: user, roles: store.userByName(user)?.roles ?? [] };
}

function forbidden(permission: AccessPermission): ConclaveError {
  return new ConclaveError('FORBIDDEN', permission === 'manage-access' ? 'You may not change access there.' : 'You may not write there.', { needs: permission });
}

/** Refuses unless `user` has `permission` on the node at `path`. */
export function requireAccess(store: ContentStore, user: string, path: string, permission: AccessPermission): void {
  // No entry anywhere: the roles alone decide, as the route and the master's command check already did.
  if (!store.accessInUse() && permission !== 'manage-access') return;
  if (!hasAccess((p) => store.accessEntriesAt(p), path, subjectOf(store, user), permission)) throw forbidden(permission);
}

/**
 * A write to the existing node at `path`: one the writer may not read answers as a missing node would (the same
 * NODE_NOT_FOUND, before any other check), then one it may not write is FORBIDDEN. Only a node the writer may read
 * can be told apart from a missing one.
 */
export function requireWritableNode(store: ContentStore, user: string, path: string): void {
  if (store.accessInUse() && !hasAccess((p) => store.accessEntriesAt(p), path, subjectOf(store, user), 'read')) {
    throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}.`, { path });
  }
  requireAccess(store, user, path, 'write');
}

/**
 * Refuses unless `user` may write the node at `path` and everything below it (a recursive delete, a move): checking
 * the node and every node below it that carries entries is exact, since any other node below decides as its nearest
 * ancestor with a matching entry does.
 */
export function requireSubtreeWrite(store: ContentStore, user: string, path: string): void {
  requireAccess(store, user, path, 'write');
  for (const inner of store.accessPathsUnder(path)) requireAccess(store, user, inner, 'write');
}

export function applySetAccess(store: ContentStore, command: SetAccessCommand): { node: ContentNode } {
  const node = store.nodeByPath(command.path);
  if (node === undefined) throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${command.path}.`, { path: command.path });
  requireAccess(store, command.user, node.path, 'manage-access');
  store.setAccessEntries(node.id, command.entries);
  return { node };
}
