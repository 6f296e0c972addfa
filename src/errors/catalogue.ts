/**
 * The one catalogue of operating errors. Every error a client can see has a stable code here, with its HTTP
 * status and whether retrying the same request can succeed. docs/http-api.md lists the same codes; a test keeps
 * the two in step, so adding a code means documenting it.
 *
 * This file is pure (no node:* imports) so that src/content can raise catalogue errors from apply().
 */
export const errorCatalogue = {
  // Malformed or invalid requests: the client must change the request.
  INVALID_REQUEST: { status: 400, retryable: false, summary: 'The request is malformed or a parameter is invalid.' },
  INVALID_JSON: { status: 400, retryable: false, summary: 'The request body is not valid JSON.' },
  INVALID_PATH: { status: 400, retryable: false, summary: 'A content path or node name is not acceptable.' },
  INVALID_PROPERTIES: { status: 400, retryable: false, summary: 'Properties must be a JSON object within the size limit.' },
  INVALID_CURSOR: { status: 400, retryable: false, summary: 'A pagination cursor is malformed or belongs to another query.' },
  MIN_INDEX_AHEAD: { status: 400, retryable: false, summary: 'X-Conclave-Min-Index, or a change feed position, names an index far beyond the commit index this node knows: not one this cluster issued.' },
  CHECKSUM_MISMATCH: { status: 400, retryable: false, summary: 'An uploaded binary does not match the checksum the client sent.' },
  BODY_TOO_LARGE: { status: 413, retryable: false, summary: 'The request body exceeds the configured limit.' },
  BATCH_TOO_LARGE: { status: 413, retryable: false, summary: 'A batch holds more operations than content.batchOperationsMax or more bytes than content.batchBytesMax; split it.' },
  BINARY_TOO_LARGE: { status: 413, retryable: false, summary: 'An uploaded binary exceeds content.binaryBytesMax.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false, summary: 'The request body has a content type this endpoint does not take.' },
  RANGE_NOT_SATISFIABLE: { status: 416, retryable: false, summary: 'The requested byte range lies outside the binary.' },
  PROPERTY_NAME_REFUSED: { status: 400, retryable: false, summary: 'A JSON body holds a property named "__proto__"; the error names it and its path.' },
  INVALID_UNICODE: { status: 400, retryable: false, summary: 'A JSON body holds a string or name that is not well-formed Unicode (a lone surrogate); the error names its path.' },
  COMMAND_NOT_REPLICABLE: { status: 400, retryable: false, summary: 'The write holds a value that would not reach the other nodes exactly as sent; nothing was stored.' },
  HEADERS_TOO_LARGE: { status: 431, retryable: false, summary: 'The request line and headers exceed the HTTP server\'s limit (a very long URL counts).' },
  EXPECTATION_FAILED: { status: 417, retryable: false, summary: 'The request\'s Expect header asks for something other than 100-continue.' },
  REQUEST_TIMEOUT: { status: 408, retryable: true, summary: 'The request\'s headers or body did not arrive in time; the connection is closed.' },

  // Authentication and authorisation.
  AUTH_REQUIRED: { status: 401, retryable: false, summary: 'The endpoint needs credentials (HTTP Basic or a Bearer token).' },
  AUTH_INVALID: { status: 401, retryable: false, summary: 'The credentials or token are wrong, expired or revoked.' },
  FORBIDDEN: { status: 403, retryable: false, summary: 'The user lacks the role, or the access on the content, this operation needs; a refused write names no node the user may not read.' },
  INTERNAL_AUTH_FAILED: { status: 401, retryable: false, summary: 'A node-to-node request did not prove the cluster secret (or its clock is too far off).' },
  RATE_LIMITED: { status: 429, retryable: true, summary: 'Too many failed logins, password checks or writes from this user or source; retry after Retry-After seconds.' },

  // Content state conflicts: the request is well formed but the repository's state refuses it.
  NODE_NOT_FOUND: { status: 404, retryable: false, summary: 'No node exists at the path or id.' },
  VERSION_NOT_FOUND: { status: 404, retryable: false, summary: 'The node has no such version: never made, or dropped by the history\'s retention (history.versionsPerNodeMax, history.retainSeconds).' },
  NODE_ID_IN_USE: { status: 409, retryable: false, summary: 'A new node\'s id (drawn by the node that received the write) belongs to another node or to one the history keeps; only a forged command meets this.' },
  HISTORY_NOT_STARTED: { status: 409, retryable: true, summary: 'The repository keeps no history yet: it starts once every member runs a release that keeps it (0.4.0).' },
  BINARY_NOT_FOUND: { status: 404, retryable: false, summary: 'The node has no binary property of that name.' },
  BLOB_NOT_FOUND: { status: 404, retryable: false, summary: 'This node holds no blob of that SHA-256 (node-to-node transfer).' },
  USER_NOT_FOUND: { status: 404, retryable: false, summary: 'No user of that name exists.' },
  ROUTE_NOT_FOUND: { status: 404, retryable: false, summary: 'No endpoint exists at this method and URL.' },
  WEBHOOK_NOT_FOUND: { status: 404, retryable: false, summary: 'No webhook of that id is registered.' },
  SNAPSHOT_NOT_FOUND: { status: 404, retryable: false, summary: 'This node holds no snapshot file at that index (any more); the master sends a newer one.' },
  PARENT_NOT_FOUND: { status: 409, retryable: false, summary: 'The parent of the target path does not exist; create it first.' },
  NODE_HAS_CHILDREN: { status: 409, retryable: false, summary: 'The node has children; delete with ?recursive=true.' },
  DESTINATION_EXISTS: { status: 409, retryable: false, summary: 'A node already exists at the destination path.' },
  MOVE_INTO_DESCENDANT: { status: 409, retryable: false, summary: 'A node cannot be moved below itself.' },
  ROOT_IMMUTABLE: { status: 409, retryable: false, summary: 'The root node cannot be deleted, moved or renamed.' },
  INVALID_ORDER: { status: 409, retryable: false, summary: 'A reorder must name each existing child exactly once.' },
  LAST_ADMIN: { status: 409, retryable: false, summary: 'The last admin cannot be deleted or lose the admin role.' },
  WEBHOOK_URL_REFUSED: { status: 400, retryable: false, summary: 'A webhook URL is not http or https, holds credentials, is too long, or names a host outside webhooks.hostsAllowed.' },
  WEBHOOKS_FULL: { status: 409, retryable: false, summary: 'The cluster already holds webhooks.max webhooks; delete one first.' },
  WEBHOOK_SECRET_UNREADABLE: { status: 500, retryable: false, summary: 'Not an HTTP answer: a webhook is broken because its sealed secret does not open with this cluster secret (the secret was changed); delete and register it again.' },
  CHANGES_COMPACTED: { status: 410, retryable: false, summary: 'The change feed no longer holds events after the position asked for (retention pruned them); the error names the oldest position still answered. Resynchronise, then follow from there.' },
  UPGRADE_IN_PROGRESS: { status: 409, retryable: false, summary: 'The request needs every member of the cluster to run a newer release than some do; finish the rolling upgrade first (the error names the versions).' },
  SCHEMA_VIOLATION: { status: 422, retryable: false, summary: 'The node the write would leave breaks the schema of its type (or its parent\'s childTypes); details.violations names every failing property by JSON Pointer and the rule. Nothing was stored.' },
  SCHEMA_REQUIRED: { status: 422, retryable: false, summary: 'The repository requires a schema for every content type (PUT /api/v1/schema-policy) and the node\'s type has none.' },
  INVALID_ACCESS: { status: 400, retryable: false, summary: 'Access control entries are malformed or too many (a principal, allow or deny, and the permissions read, write, manage-access); the error names the field.' },
  INVALID_SEARCH_QUERY: { status: 400, retryable: false, summary: 'A full-text query is malformed or over a limit (search.queryCharsMax, search.queryTermsMax); the message names the problem and details.position where it is.' },
  SEARCH_TOO_BROAD: { status: 422, retryable: false, summary: 'A full-text query matches more documents than search.candidatesMax (every match is ranked); add or lengthen words. Filters do not narrow what is ranked.' },
  INVALID_SCHEMA: { status: 400, retryable: false, summary: 'A schema definition is malformed, over a limit, or holds a pattern that cannot run in linear time; the error names the field.' },
  SCHEMA_NOT_FOUND: { status: 404, retryable: false, summary: 'No schema is in force for that type (never written, or deleted).' },
  SCHEMA_MIGRATION_PENDING: { status: 409, retryable: false, summary: 'The type\'s schema is being migrated (or its migration failed and awaits retry or abandon); its schema cannot change until that ends.' },
  SCHEMA_MIGRATION_NOT_FOUND: { status: 409, retryable: false, summary: 'The type has no migration in the state the request needs (retry: a failed one; abandon: a running or failed one).' },
  SCHEMA_MIGRATION_STALE: { status: 409, retryable: true, summary: 'A migration batch was proposed from progress that is no longer the committed one (a replaced master\'s): it was refused, so no range is migrated twice. Only the master\'s migration job meets this.' },
  PRECONDITION_FAILED: { status: 412, retryable: false, summary: 'If-Match or If-None-Match did not hold; nothing changed.' },

  // The cluster cannot take the write here or now.
  CLUSTER_NO_MASTER: { status: 503, retryable: true, summary: 'No master is elected; writes are refused until one is (reads follow cluster.noMasterBlock).' },
  MASTER_UNREACHABLE: { status: 503, retryable: true, summary: 'This node could not reach the master to forward the request to it; the error names the master tried. Retry shortly.' },
  NOT_MASTER: { status: 421, retryable: true, summary: 'This node is not the master; the error names the master to send writes to.' },
  MASTER_CHANGED: { status: 503, retryable: true, summary: 'The master changed before the write committed; it was not applied. Retry.' },
  WRITE_OUTCOME_UNKNOWN: { status: 504, retryable: false, summary: 'The write was not applied within cluster.writeTimeoutMs; it may still be. Read before retrying.' },
  BLOB_NOT_REPLICATED: { status: 503, retryable: true, summary: 'An upload could not be copied to a quorum of the voting nodes in time; nothing was stored. Retry.' },
  CLUSTER_JOIN_TIMEOUT: { status: 503, retryable: false, summary: 'A node that was clustered found no master within cluster.joinTimeoutMs; it stops rather than serve stale data alone.' },
  NOT_READY: { status: 503, retryable: true, summary: 'This node has not joined its cluster or caught up yet; retry shortly or use another node.' },

  // Backups and restores (mostly the CLI's answers: the status matters only for GET /api/v1/admin/backup).
  BACKUP_CORRUPT: { status: 422, retryable: false, summary: 'A backup file is damaged or not a backup: a checksum, the archive, the manifest or the content digest does not hold; the message says which part.' },
  BACKUP_TRUNCATED: { status: 422, retryable: false, summary: 'A backup file ends before every part its manifest lists: the transfer or the copy was cut short. Take or copy it again.' },
  BACKUP_FORMAT_NEWER: { status: 422, retryable: false, summary: 'The backup was written by a newer Conclave (backup or data format); restore it with that version or newer.' },
  BACKUP_FOREIGN: { status: 422, retryable: false, summary: 'The backup belongs to another cluster than the one it is to join (--as clone), or names a base of another cluster.' },
  BACKUP_CHAIN_INCOMPLETE: { status: 422, retryable: false, summary: 'An incremental backup\'s base (or one of its bases) is missing; the message names the file needed.' },
  BACKUP_BLOB_MISSING: { status: 503, retryable: true, summary: 'A blob the content references could not be found on this node or fetched from another in time; no backup was written. Retry, or take it from another node.' },
  BACKUPS_BUSY: { status: 503, retryable: true, summary: 'This node is already writing backup.concurrentMax backups; retry when one ends.' },
  BACKUP_DIRECTORY_REFUSED: { status: 422, retryable: false, summary: 'The scheduled backup directory is not one this node allows (backup.directoriesAllowed), is inside its data directory, or is not a real directory owned by the node\'s user.' },
  RESTORE_TARGET_NOT_EMPTY: { status: 409, retryable: false, summary: 'The directory to restore into is not empty; choose an empty one, or pass --force to replace what it holds.' },

  // The server cannot take the request now.
  SUBSCRIBER_TOO_SLOW: { status: 503, retryable: true, summary: 'An event stream was cut: its client read nothing for changes.subscriberStallMsMax while its buffer was full. Reconnect with the position named (Last-Event-ID does it).' },
  OVERLOADED: { status: 503, retryable: true, summary: 'The write queue is full, or too many password checks run at once; retry shortly.' },
  SHUTTING_DOWN: { status: 503, retryable: true, summary: 'The node is shutting down; retry on another node or later.' },
  DISK_FULL: { status: 507, retryable: true, summary: 'The data disk is full; nothing was stored. Free space and retry.' },
  STORAGE_ERROR: { status: 500, retryable: true, summary: 'The storage layer failed; nothing was acknowledged.' },
  DATA_DIR_UNSAFE: { status: 500, retryable: false, summary: 'Not an HTTP answer: the node refused to start on a data directory that every user of the machine may read, write or enter.' },
  INTERNAL: { status: 500, retryable: false, summary: 'An unexpected server error; the log has the details.' },
} as const satisfies Record<string, { status: number; retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

/** An operating error: expected, typed, with a stable code. Broken invariants use assert instead. */
export class ConclaveError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'ConclaveError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.retryable = errorCatalogue[code].retryable;
    this.details = details;
  }

  toJSON(): { error: Record<string, unknown> } {
    return { error: { code: this.code, message: this.message, retryable: this.retryable, ...this.details } };
  }
}

export function isConclaveError(err: unknown): err is ConclaveError {
  return err instanceof ConclaveError;
}

/** A broken invariant: crash loudly rather than continue with corrupt state. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) {
    throw new Error(`invariant violated: ${message}`);
  }
}
