import { ConclaveError } from '../errors/catalogue.js';
import type { Role } from './model.js';
import { parentPath, rootPath } from './paths.js';
import { parseUserName } from './validate.js';

/**
 * Access control on the content tree. Any node may carry a list of entries — a principal, allow or deny, and the
 * permissions it concerns — and they hold for the node and everything below it:
 *
 * - for a permission, the nearest node on the way from the node up to the root with an entry matching the user and
 *   that permission decides; on that node a matching deny beats a matching allow;
 * - where no entry matches, the user's roles decide (reader reads, editor reads and writes), and no one but an admin
 *   manages access; an entry never grants more than the roles allow (a reader never writes; manage-access can be
 *   given to editors);
 * - an admin has every permission everywhere, whatever the entries say (so no entry can lock the cluster out).
 *
 * Principals: `user:NAME`, `role:reader|editor|admin`, and `everyone` (anonymous readers included). The entries
 * are content state, written through the journal (setAccess), so every node decides alike. Pure: no I/O.
 */

export const accessPermissions = ['read', 'write', 'manage-access'] as const;
export type AccessPermission = (typeof accessPermissions)[number];

export interface AccessEntry {
  readonly principal: string;
  readonly effect: 'allow' | 'deny';
  readonly permissions: readonly AccessPermission[];
}

/** Entries one node carries at most: every read evaluates them, so a list is short by design. */
export const accessEntriesPerNodeMax = 64;

/** Who is asking: a user's name and roles (an anonymous reader: no roles, and not a user any entry names). */
export interface AccessSubject {
  readonly name: string;
  readonly roles: readonly Role[];
  /** An anonymous reader, admitted by auth.anonymousRead: only `everyone` entries concern it. */
  readonly anonymous?: boolean;
}

const roleNames: readonly string[] = ['reader', 'editor', 'admin'];

function invalid(message: string, field: string): ConclaveError {
  return new ConclaveError('INVALID_ACCESS', message, { field });
}

function parsePrincipal(raw: unknown, field: string): string {
  if (raw === 'everyone') return raw;
  if (typeof raw === 'string' && raw.startsWith('role:') && roleNames.includes(raw.slice(5))) return raw;
  if (typeof raw === 'string' && raw.startsWith('user:')) {
    try {
      return `user:${parseUserName(raw.slice(5))}`;
    } catch {
      // named below
    }
  }
  throw invalid(`${field} must be "user:NAME", "role:reader", "role:editor", "role:admin" or "everyone".`, field);
}

/**
 * The entries of one node, as the API takes them: [{ "principal", "effect": "allow" | "deny", "permissions": [...] }].
 * Stored in one canonical form (permissions in catalogue order), so parsing it again gives it again.
 */
export function parseAccessEntries(raw: unknown): AccessEntry[] {
  if (!Array.isArray(raw)) throw invalid('"entries" must be an array of access entries.', 'entries');
  if (raw.length > accessEntriesPerNodeMax) throw invalid(`A node carries at most ${accessEntriesPerNodeMax} access entries.`, 'entries');
  return raw.map((item: unknown, i) => {
    const field = `entries/${i}`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw invalid(`${field} must be an object.`, field);
    const { principal, effect, permissions, ...rest } = item as Record<string, unknown>;
    const unknownField = Object.keys(rest)[0];
    if (unknownField !== undefined) throw invalid(`${field} has an unknown field "${unknownField}".`, `${field}/${unknownField}`);
    if (effect !== 'allow' && effect !== 'deny') throw invalid(`${field}/effect must be "allow" or "deny".`, `${field}/effect`);
    if (!Array.isArray(permissions) || permissions.length === 0 || !permissions.every((p) => (accessPermissions as readonly unknown[]).includes(p)) || new Set(permissions).size !== permissions.length) {
      throw invalid(`${field}/permissions must list one or more of read, write and manage-access, each once.`, `${field}/permissions`);
    }
    return { principal: parsePrincipal(principal, `${field}/principal`), effect, permissions: accessPermissions.filter((p) => permissions.includes(p)) };
  });
}

function matches(entry: AccessEntry, subject: AccessSubject): boolean {
  if (entry.principal === 'everyone') return true;
  if (subject.anonymous === true) return false;
  if (entry.principal.startsWith('user:')) return entry.principal.slice(5) === subject.name;
  return subject.roles.includes(entry.principal.slice(5) as Role);
}

/**
 * The most the roles allow, whatever the entries say: an entry can take a permission away and give it back lower
 * down, never give more than the roles do — a reader never writes, and only an editor can be given manage-access.
 */
function roleCeiling(subject: AccessSubject, permission: AccessPermission): boolean {
  if (permission === 'read') return subject.anonymous === true || subject.roles.length > 0;
  return subject.roles.includes('editor') || subject.roles.includes('admin');
}

/** What the roles grant where no entry decides: reading and writing as the roles say; managing access, admins only. */
function roleDefault(subject: AccessSubject, permission: AccessPermission): boolean {
  return permission === 'manage-access' ? subject.roles.includes('admin') : roleCeiling(subject, permission);
}

/**
 * Whether `subject` has `permission` on the node at `path`, given the entries of each node on the way up
 * (`entriesAt(path)`: undefined where a node carries none).
 */
export function hasAccess(entriesAt: (path: string) => readonly AccessEntry[] | undefined, path: string, subject: AccessSubject, permission: AccessPermission): boolean {
  return decideAccess(levelsOf(entriesAt, path), subject, permission);
}

/** The entries of each node from `path` up to the root (undefined where a node carries none). */
export function* levelsOf(entriesAt: (path: string) => readonly AccessEntry[] | undefined, path: string): Generator<readonly AccessEntry[] | undefined> {
  for (let at: string | null = path; at !== null; at = at === rootPath ? null : parentPath(at)) yield entriesAt(at);
}

/**
 * The decision itself, over the entries of each level from the node up to the root: what hasAccess does along a
 * path, and what the history of a deleted node needs along the nodes it had above it when it was deleted.
 */
export function decideAccess(levels: Iterable<readonly AccessEntry[] | undefined>, subject: AccessSubject, permission: AccessPermission): boolean {
  if (subject.roles.includes('admin')) return true;
  if (!roleCeiling(subject, permission)) return false;
  for (const entries of levels) {
    if (entries === undefined) continue;
    let allowed = false;
    let denied = false;
    for (const entry of entries) {
      if (!entry.permissions.includes(permission) || !matches(entry, subject)) continue;
      if (entry.effect === 'deny') denied = true;
      else allowed = true;
    }
    if (denied) return false;
    if (allowed) return true;
  }
  return roleDefault(subject, permission);
}
