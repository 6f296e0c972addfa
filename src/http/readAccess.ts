import type { FastifyRequest } from 'fastify';

import { anonymous } from '../auth/authenticator.js';
import { hasAccess, type AccessSubject } from '../content/access.js';
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

/**
 * For a reader that outlives one request (a change feed stream): whether it may read a path, decided at each call
 * against the entries in force then; null for an admin, who reads everything.
 */
export function liveReadFilter(content: ContentTables, viewer: AccessSubject): ((path: string) => boolean) | null {
  if (viewer.roles.includes('admin')) return null;
  return (path) => !content.access.any() || hasAccess(content.access.entriesAt, path, viewer, 'read');
}

/** Names a reader's access for shared pages: equal keys decide alike. */
export function readerKeyOf(viewer: AccessSubject): string {
  return JSON.stringify([viewer.anonymous === true ? null : viewer.name, [...viewer.roles].sort()]);
}
