import type { FastifyRequest } from 'fastify';

import { anonymous } from '../auth/authenticator.js';
import { decideAccess, hasAccess, levelsOf, type AccessEntry, type AccessSubject } from '../content/access.js';
import { parentPath, rootPath } from '../content/paths.js';
import type { ContentTables } from '../storage/contentTables.js';

/**
 * Reading under access control (src/content/access.ts): every route that shows content asks here whether the
 * caller may read a path, and answers a node it may not read exactly as one that does not exist — the same 404,
 * the same message — and leaves it out of every listing, count and cursor.
 */

/** The caller as access control sees it. */
export function viewerOf(request: FastifyRequest): AccessSubject {
  const principal = request.principal;
  return principal === anonymous ? { name: principal.name, roles: [], anonymous: true } : { name: principal.name, roles: principal.roles };
}

/** Whether the viewer may read the node at a path; null when it may read every node (an admin, or no entries anywhere). */
export function readFilter(content: ContentTables, viewer: AccessSubject): ((path: string) => boolean) | null {
  if (viewer.roles.includes('admin') || !content.access.any()) return null;
  return (path) => hasAccess(content.access.entriesAt, path, viewer, 'read');
}

/** Whether the request's caller may read the node at `path`. */
export function canRead(content: ContentTables, request: FastifyRequest, path: string): boolean {
  return readFilter(content, viewerOf(request))?.(path) ?? true;
}

/** Names a reader's access for shared pages: equal keys decide alike. */
export function readerKeyOf(viewer: AccessSubject): string {
  return JSON.stringify([viewer.anonymous === true ? null : viewer.name, [...viewer.roles].sort()]);
}

/**
 * For what the history and the change feed show of a node by its id: whether the viewer may read node `id` — live,
 * where it is now; deleted, by the entries it and the deleted nodes above it carried when it was deleted (kept with
 * its history: src/storage/accessTables.ts) and then the live ancestors' entries now; a node the history no longer
 * knows, at `fallbackPath`. A move or a delete never makes what an entry hid readable. Null when the viewer reads
 * everything (an admin, or no entry anywhere, in the tree or the history).
 */
export function nodeReadFilter(content: ContentTables, viewer: AccessSubject): ((id: string, fallbackPath: string) => boolean) | null {
  if (viewer.roles.includes('admin') || !content.access.anyRows()) return null;
  return (id, fallbackPath) => {
    const live = content.nodeById(id);
    if (live !== undefined) return hasAccess(content.access.entriesAt, live.path, viewer, 'read');
    const levels: Array<readonly AccessEntry[] | undefined> = [];
    const deleted = content.versions.deletedPlace(id);
    if (deleted === undefined) return hasAccess(content.access.entriesAt, fallbackPath, viewer, 'read');
    let place: { path: string; parentId: string | null } = deleted;
    let placeId = id;
    // Up through the deleted nodes above it, as they were deleted (a tree is at most a few hundred levels deep).
    for (;;) {
      const own = content.access.entriesOf(placeId);
      levels.push(own.length === 0 ? undefined : own);
      const parent = place.parentId === null ? undefined : content.nodeById(place.parentId);
      if (parent !== undefined) return decideAccess([...levels, ...levelsOf(content.access.entriesAt, parent.path)], viewer, 'read');
      const above: { path: string; parentId: string | null } | undefined = place.parentId === null ? undefined : content.versions.deletedPlace(place.parentId);
      if (above === undefined || place.path === rootPath) {
        return decideAccess([...levels, ...(place.path === rootPath ? [] : levelsOf(content.access.entriesAt, parentPath(place.path)))], viewer, 'read');
      }
      placeId = place.parentId!;
      place = above;
    }
  };
}

/** A change feed reader's access: each event decided by its node, at delivery (a live reader: see nodeReadFilter). */
export function liveNodeReadFilter(content: ContentTables, viewer: AccessSubject): ((id: string, path: string) => boolean) | null {
  if (viewer.roles.includes('admin')) return null;
  return (id, path) => nodeReadFilter(content, viewer)?.(id, path) ?? true;
}
