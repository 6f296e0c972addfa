/** The repository's data model, shared by apply(), storage and the HTTP representation. */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface BinaryRef {
  readonly sha256: string;
  readonly size: number;
  readonly contentType: string;
}

export interface ContentNode {
  readonly id: string;
  readonly path: string;
  readonly name: string;
  readonly parentId: string | null;
  /** Order among siblings; unique within a parent, gaps allowed. */
  readonly position: number;
  readonly type: string;
  readonly properties: JsonObject;
  readonly binaries: Readonly<Record<string, BinaryRef>>;
  /** Counts changes to this node itself: type, properties, binaries, name, place, order of its children. */
  readonly version: number;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly modifiedAt: string;
  readonly modifiedBy: string;
}

export const roles = ['reader', 'editor', 'admin'] as const;
export type Role = (typeof roles)[number];

export interface User {
  readonly name: string;
  readonly passwordHash: string;
  readonly roles: readonly Role[];
  /** Bumped on every change; tokens carry it, so a password change revokes older tokens. */
  readonly version: number;
  readonly createdAt: string;
  readonly modifiedAt: string;
}

/**
 * The entity tag of a node. It names the node's id as well as its version, so a node deleted and created again
 * at the same path never matches a tag taken from its predecessor.
 */
export function etagOf(node: Pick<ContentNode, 'id' | 'version'>): string {
  return `"${node.id}:${node.version}"`;
}

export const defaultNodeType = 'node';
export const rootNodeType = 'root';
