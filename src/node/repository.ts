import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';

import { precheckSchemas } from '../content/applySchemas.js';
import type { BatchOperation, Command, Preconditions } from '../content/commands.js';
import { checkPreconditions } from '../content/preconditions.js';
import { versionNotFound, type HistoryRetention, type NodeVersion, type VersionSummary } from '../content/history.js';
import type { ContentNode, JsonObject, Role } from '../content/model.js';
import type { SchemaDefinition } from '../content/schema.js';
import { rootPath } from '../content/paths.js';
import type { QueryCursor, QuerySpec } from '../content/query.js';
import { ConclaveError } from '../errors/catalogue.js';
import type { BlobStore } from '../storage/blobStore.js';
import type { ContentTables, Page, PageTake, Visible, StoredNode } from '../storage/contentTables.js';
import type { ClusterRuntime, Committed } from './clusterRuntime.js';
import type { AccessEntry } from '../content/access.js';

/** Copies a stored upload to other nodes before its entry is proposed (replication/blobPusher.ts). */
export interface BlobReplicas {
  /** Resolves once a quorum of the voting nodes holds the blob; rejects when none does in time. */
  replicate(sha256: string, size: number): Promise<void>;
}

const noReplicas: BlobReplicas = { replicate: async () => undefined };

/**
 * What Repository reads of a write's origin: the user a content command records as its author. Everything else an
 * origin carries is for the proposer, and passed to it unread.
 */
export interface WriteAuthor {
  readonly authority: { readonly user: string };
}

/**
 * Proposes the command of a write method, given the origin the caller passed: here, or wherever the origin lets it
 * go (the composition root injects src/forwarding/writeRouter.ts, which may send it to the master).
 */
export type WriteProposer<O> = (command: Command, origin: O) => Promise<Committed>;

/**
 * The repository as the HTTP layer sees it: reads straight from the content tables, writes as commands through
 * the journal. This is where the inputs a command must carry — new ids, the time, the author — are drawn, so
 * that apply() itself stays deterministic. `O` is the origin of a write (who asks, and how it may be proposed),
 * opaque here but for its author.
 */
export class Repository<O extends WriteAuthor> {
  constructor(
    private readonly runtime: ClusterRuntime,
    readonly content: ContentTables,
    readonly blobs: BlobStore,
    private readonly now: () => Date = () => new Date(),
    private readonly blobReplicas: BlobReplicas = noReplicas,
    /** Default: every write is proposed on this node. */
    private readonly proposeCommand: WriteProposer<O> = (command) => runtime.propose(command),
  ) {}

  /** Proposes a write once the schemas this node has applied accept it (apply() decides again). */
  private proposeWrite(command: Command, origin: O): Promise<Committed> {
    precheckSchemas(this.content, command);
    return this.proposeCommand(command, origin);
  }

  get appliedIndex(): number {
    return this.runtime.appliedIndex;
  }

  /**
   * Whether the bootstrap entry (the root, the first admin, the token key) is applied here. Once true it stays true
   * (the root is never deleted, and a snapshot is never installed over a later applied index), so it is read from
   * the tables only until then: every request asks.
   */
  get isBootstrapped(): boolean {
    this.bootstrapped ||= this.content.nodeByPath(rootPath) !== undefined;
    return this.bootstrapped;
  }

  private bootstrapped = false;

  /** Refuses with NOT_READY (503, retryable) while the bootstrap entry is not applied here: no user exists yet. */
  requireBootstrapped(): void {
    if (this.isBootstrapped) return;
    throw new ConclaveError(
      'NOT_READY',
      'This node has not applied the repository\'s first entries yet (the root and the users); retry in a moment or use another node.',
    );
  }

  private time(): string {
    return this.now().toISOString();
  }

  /** Creates the root and the first admin, once in a repository's life. */
  async bootstrap(adminPasswordHash: string, history?: HistoryRetention): Promise<void> {
    await this.runtime.propose({
      type: 'bootstrap',
      rootId: randomUUID(),
      time: this.time(),
      tokenKeyId: randomUUID(),
      adminPasswordHash,
      ...(history === undefined ? {} : { history }),
    });
  }

  /** Proposes a new token key id: every bearer token issued so far stops working once it applies. */
  rotateTokenKey(): Promise<Committed> {
    return this.runtime.propose({ type: 'rotateTokenKey', keyId: randomUUID(), time: this.time() });
  }

  node(path: string): ContentNode {
    const node = this.content.nodeByPath(path);
    if (node === undefined) throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}.`, { path });
    return node;
  }

  /** The node at `path` with its properties as stored (JSON text): what a read sends. */
  storedNode(path: string): StoredNode {
    const node = this.content.storedNodeByPath(path);
    if (node === undefined) throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}.`, { path });
    return node;
  }

  nodeById(id: string): ContentNode {
    const node = this.content.nodeById(id);
    if (node === undefined) throw new ConclaveError('NODE_NOT_FOUND', `No node has the id ${id}.`, { id });
    return node;
  }

  children(parentId: string, after: QueryCursor | undefined, limit: number, take: PageTake, visible: Visible = null): Page<StoredNode> {
    return this.content.childrenPage(parentId, after, limit, take, visible);
  }

  query(spec: QuerySpec, take: PageTake, visible: Visible = null): Page<StoredNode> {
    return this.content.query(spec, take, visible);
  }

  /** The node a history request at `path` names: the one there, else the one most recently deleted there. */
  historyNodeId(path: string): { readonly id: string; readonly deleted: boolean } {
    const live = this.content.nodeByPath(path);
    if (live !== undefined) return { id: live.id, deleted: false };
    const deleted = this.content.versions.deletedAt(path);
    if (deleted !== undefined) return { id: deleted, deleted: true };
    throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}, and none deleted there is in the history.`, { path });
  }

  /** Node `id`, live or deleted: whether it is deleted; NODE_NOT_FOUND when neither the tree nor the history has it. */
  historyNodeById(id: string): { readonly id: string; readonly deleted: boolean } {
    if (this.content.nodeById(id) !== undefined) return { id, deleted: false };
    if (this.content.versions.lastVersionNumber(id) !== undefined) return { id, deleted: true };
    throw new ConclaveError('NODE_NOT_FOUND', `No node has the id ${id}, and none deleted with it is in the history.`, { id });
  }

  /** Versions of node `id` older than `before`, newest first. */
  versions(id: string, before: number, limit: number): { readonly items: VersionSummary[]; readonly more: boolean } {
    return this.content.versions.page(id, before, limit);
  }

  version(id: string, version: number): NodeVersion {
    const found = this.content.versions.version(id, version);
    if (found === undefined) throw versionNotFound(id, version);
    return found;
  }

  deletedChildren(parentId: string, after: { idx: number; id: string } | undefined, limit: number, visible: ((id: string, path: string) => boolean) | null = null): { readonly items: VersionSummary[]; readonly more: boolean } {
    return this.content.versions.deletedChildren(parentId, after, limit, visible);
  }

  /** Makes version `version` of node `id` current again (RestoreCommand); a deleted node comes back at `path`. */
  restore(id: string, version: number, path: string, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'restore', id, version, path, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  /** `nodeType` undefined: a replace keeps the node's type, a create gets the default (decided in apply()). */
  put(path: string, nodeType: string | undefined, properties: JsonObject, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite(
      { type: 'put', path, newId: randomUUID(), ...(nodeType === undefined ? {} : { nodeType }), properties, ...pre, time: this.time(), user: origin.authority.user },
      origin,
    );
  }

  patch(path: string, patch: JsonObject, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'patch', path, patch, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  delete(path: string, recursive: boolean, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'delete', path, recursive, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  move(from: string, to: string, before: string | null, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'move', from, to, before, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  /** Several content writes as one entry: all applied, or none (BatchCommand). */
  batch(operations: readonly BatchOperation[], origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'batch', operations, time: this.time(), user: origin.authority.user }, origin);
  }

  reorder(path: string, order: string[], pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'reorder', path, order, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  /**
   * Streams the upload into the blob store first, then journals a reference to it: the journal never carries the
   * bytes, and the entry is only proposed once the blob is durable under its hash here and held by a quorum of the
   * voting nodes — the same quorum rule as the entry's, so no minority's loss can lose the bytes of a committed
   * entry. When no quorum holds it in time the write is refused (BLOB_NOT_REPLICATED) and no entry exists.
   */
  async setBinary(
    path: string,
    property: string,
    body: Readable,
    upload: { contentType: string; expectedSha256?: string; bytesMax: number },
    pre: Preconditions,
    origin: O,
  ): Promise<Committed> {
    // Refuse early, before reading a large body, when the node is missing or a precondition already fails;
    // apply() checks again against the state the entry meets.
    checkPreconditions(this.node(path), pre, path);
    const stored = await this.blobs.write(body, { bytesMax: upload.bytesMax, expectedSha256: upload.expectedSha256 });
    await this.blobReplicas.replicate(stored.sha256, stored.size);
    return this.proposeWrite(
      {
        type: 'setBinary',
        path,
        property,
        binary: { sha256: stored.sha256, size: stored.size, contentType: upload.contentType },
        ...pre,
        time: this.time(),
        user: origin.authority.user,
      },
      origin,
    );
  }

  deleteBinary(path: string, property: string, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'deleteBinary', path, property, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  /** Writes the next version of a type's schema (PutSchemaCommand): in force at once, or pending behind a migration. */
  putSchema(typeName: string, definition: SchemaDefinition, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'putSchema', typeName, definition, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  deleteSchema(typeName: string, pre: Preconditions, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'deleteSchema', typeName, ...pre, time: this.time(), user: origin.authority.user }, origin);
  }

  setSearchPolicy(indexUntypedNodes: boolean, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'setSearchPolicy', indexUntypedNodes, time: this.time(), user: origin.authority.user }, origin);
  }

  setAccess(path: string, entries: readonly AccessEntry[], origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'setAccess', path, entries, time: this.time(), user: origin.authority.user }, origin);
  }

  setSchemaPolicy(schemasRequired: boolean, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'setSchemaPolicy', schemasRequired, time: this.time(), user: origin.authority.user }, origin);
  }

  resolveSchemaMigration(typeName: string, action: 'retry' | 'abandon', origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'resolveSchemaMigration', typeName, action, time: this.time(), user: origin.authority.user }, origin);
  }

  putUser(name: string, change: { passwordHash?: string; roles?: Role[] }, createOnly: boolean, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'putUser', name, ...change, createOnly, time: this.time() }, origin);
  }

  deleteUser(name: string, origin: O): Promise<Committed> {
    return this.proposeWrite({ type: 'deleteUser', name, time: this.time() }, origin);
  }
}
