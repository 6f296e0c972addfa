import type { ChangeOp, ContentChange } from './changes.js';
import type { VersionMade } from './history.js';
import type { ContentNode } from './model.js';
import type { ContentStore } from './store.js';

/** How apply() stores a change to a node: as a new version, recorded for the change feed. */

/** The node a change left. */
export interface SavedChange {
  readonly node: ContentNode;
}

/** The feed's event for a change to `node` (its state after the change; for a delete, its last). */
export function changeOf(op: ChangeOp, node: ContentNode, command: { readonly time: string; readonly user: string }, extra: Partial<ContentChange> = {}): ContentChange {
  return { op, path: node.path, id: node.id, type: node.type, version: node.version, by: command.user, at: command.time, ...extra };
}

/** How history records a change, when it is not simply the feed's op. */
export interface VersionOptions {
  /** What made the version, for history (default: the feed's op). */
  readonly made?: VersionMade;
  /** The caller already superseded the node's current version (a move, before the paths change). */
  readonly superseded?: boolean;
}

/** Stores a change to one node as a new version of it (history keeps the one it replaces), recorded for the feed as `op`. */
export function saveChange(
  store: ContentStore,
  node: ContentNode,
  command: { readonly time: string; readonly user: string },
  changes: Partial<ContentNode>,
  op: ChangeOp,
  extra: Partial<ContentChange> = {},
  version: VersionOptions = {},
): SavedChange {
  const updated = { ...node, ...changes, version: node.version + 1, modifiedAt: command.time, modifiedBy: command.user };
  if (version.superseded !== true) store.supersedeVersion(node, command.time);
  store.updateNode(updated, version.made ?? { op });
  store.recordChange(changeOf(op, updated, command, extra));
  return { node: updated };
}

