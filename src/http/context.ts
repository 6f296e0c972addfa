import type { Authenticator, Permission, Principal } from '../auth/authenticator.js';
import type { RateLimiter } from '../auth/rateLimiter.js';
import type { TokenSigner } from '../auth/tokens.js';
import type { Config } from '../config/settings.js';
import type { ClusterRuntime } from '../node/clusterRuntime.js';
import type { Repository } from '../node/repository.js';
import type { InternalAuth } from '../auth/internalAuth.js';
import type { RequestRelay } from '../forwarding/requestRelay.js';
import type { WriteOrigin } from '../forwarding/writeRouter.js';
import type { BlobFetcher } from '../replication/blobFetcher.js';
import type { SnapshotStore } from '../storage/snapshotStore.js';
import type { BackupService } from '../backup/backupService.js';
import type { ChangeFeed } from '../changes/changeFeed.js';
import type { RestoredOrigin } from '../backup/restoredOrigin.js';
import type { NodeMetrics } from '../metrics/nodeMetrics.js';

/** What every route plugin gets: decorated once on the app, read through `app.conclave`. */
export interface HttpContext {
  readonly config: Config;
  /** Writes take the origin a route builds (writeOrigin.ts); the composition root routes them (src/forwarding/writeRouter.ts). */
  readonly repository: Repository<WriteOrigin>;
  readonly runtime: ClusterRuntime;
  readonly authenticator: Authenticator;
  readonly tokens: TokenSigner;
  /** Proves this node to its peers under /internal/v1 (internalAuth.ts). */
  readonly clusterSecret: string;
  /** Signs this node's node-to-node requests and verifies its peers' (internalAuth.ts). */
  readonly internalAuth: InternalAuth;
  /** Gets blobs this node lacks from its peers (a read of a missing one waits for it). */
  readonly blobFetcher: BlobFetcher;
  /** This node's snapshot files, served to followers (null: a node that keeps none, in tests). */
  readonly snapshots: SnapshotStore | null;
  /** Takes backups of this node (null: a node without one, in tests). */
  readonly backups: BackupService | null;
  /** Where this node's data came from when it was restored from a backup (null: a node without that record, in tests). */
  readonly restoredOrigin: RestoredOrigin | null;
  /** The change feed this node serves (GET /api/v1/changes). */
  readonly changes: ChangeFeed;
  /** This node's metrics, served at GET /metrics (null: a node without them, in tests). */
  readonly metrics: NodeMetrics | null;
  /** True once SIGTERM arrived: new requests are refused, in-flight ones finish. */
  closing: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    conclave: HttpContext;
    /** The request coordinator: `app.forwarder.forwardToMaster(request, reply)` sends a request on to the master. */
    forwarder: RequestRelay;
    /** Each user's writes to this node (auth.userWritesPerSecondMax): a request takes one, a batch one per operation. */
    userWrites: RateLimiter;
  }
  interface FastifyRequest {
    principal: Principal;
  }
  // forwardsCommand, on requests and in route options, is declared by the relay that reads and sets it
  // (src/forwarding/requestRelay.ts).
  interface FastifyContextConfig {
    /** What the caller must be allowed to do; routes without it (health, login) are public. */
    permission?: Permission;
    /** The query parameters the route takes; any other is refused (queryParameters.ts). Absent: none. */
    query?: readonly string[] | 'checkedByRoute';
  }
}
