import './linearRegExp.js';
import type { FastifyInstance } from 'fastify';
import { randomUUID } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

import { Authenticator } from '../auth/authenticator.js';
import { generatePassword, hashPassword, passwordLengthMin } from '../auth/passwords.js';
import { AdminPasswordKeeper } from './adminPassword.js';
import { TokenSigner } from '../auth/tokens.js';
import { generateClusterSecret, readClusterSecretFile } from '../config/clusterSecret.js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/settings.js';
import type { BootstrapMethod } from '../core/bootstrap.js';
import { everyMemberAtLeast, type NodeDescriptor } from '../core/clusterState.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';
import { buildApp } from '../http/app.js';
import { checkBatch } from '../http/routes/batch.js';
import { checkSchemasAvailable, schemasSinceVersion } from '../http/routes/schemas.js';
import { checkAccessAvailable } from '../http/routes/access.js';
import { SchemaMigrator } from '../schemas/schemaMigrator.js';
import type { HttpContext } from '../http/context.js';
import { InternalAuth } from '../auth/internalAuth.js';
import { InternalListener } from '../http/internalListener.js';
import { MetricsListener } from '../http/metricsListener.js';
import { NodeMetrics } from '../metrics/nodeMetrics.js';
import { httpsOptionsOf, nodeTlsOf } from '../http/tlsFiles.js';
import { BlobStore } from '../storage/blobStore.js';
import { ContentTables } from '../storage/contentTables.js';
import { getMeta, openDatabase, setMeta, type Db } from '../storage/database.js';
import { JournalStore } from '../storage/journal.js';
import { fileRefOf } from '../storage/snapshotFile.js';
import { SnapshotStore } from '../storage/snapshotStore.js';
import { SnapshotFetcher } from '../replication/snapshotFetcher.js';
import { coordinatorBugs, type CoordinatorBug, type CoordinatorSnapshotData } from '../core/clusterCoordinator.js';
import { formatEndpoint } from '../discovery/seeds.js';
import { BlobClient } from '../replication/blobClient.js';
import { BlobCollector, referencedBlobs } from '../replication/blobCollector.js';
import { BlobFetcher } from '../replication/blobFetcher.js';
import { BlobPins } from '../replication/blobPins.js';
import { BlobPusher } from '../replication/blobPusher.js';
import { BackupPruner } from '../backup/backupPruner.js';
import { BackupSchedule } from '../backup/backupSchedule.js';
import { BackupService } from '../backup/backupService.js';
import { existingScheduledBackup } from '../backup/existingBackup.js';
import { RestoredOrigin } from '../backup/restoredOrigin.js';
import { ChangeFeed } from '../changes/changeFeed.js';
import { WebhookDelivery } from '../webhooks/webhookDelivery.js';
import { WebhookRetention } from '../webhooks/webhookRetention.js';
import { ChangePruner } from '../changes/changePruner.js';
import { prepareSearchIndex } from '../storage/searchIndex.js';
import { HistoryKeeper, historySinceVersion } from '../history/historyKeeper.js';
import { schemaCommandTypes } from '../content/commands.js';
import { requireHistory, type HistoryRetention } from '../content/history.js';
import { ClusterJobs } from '../jobs/clusterJobs.js';
import { InternalHttpClient } from '../replication/internalHttp.js';
import { CommandChannel } from '../forwarding/commandChannel.js';
import { CommandClient } from '../forwarding/commandClient.js';
import { CommandServer } from '../forwarding/commandServer.js';
import { adminResetOrigin, WriteRouter, type WriteOrigin } from '../forwarding/writeRouter.js';
import { ClusterNetwork } from './clusterNetwork.js';
import { ClusterRuntime } from './clusterRuntime.js';
import { Repository } from './repository.js';

/** The software version nodes compare when one joins (major must match; never older than the oldest member). */
export const softwareVersion = '0.6.0';

/** A peer silent this long during a node-to-node transfer (waiting for headers or the next chunk) fails it. */
const internalIdleTimeoutMs = 30_000;

/** Node-to-node blob replication: the pieces a node starts and stops together. */
interface BlobReplication {
  readonly http: InternalHttpClient;
  readonly pusher: BlobPusher;
  readonly fetcher: BlobFetcher;
  readonly collector: BlobCollector;
}

export interface StartOptions {
  /** The first admin's password; generated and printed when absent. Ignored once the repository exists. */
  readonly adminPassword?: string;
  /** Where a generated admin password (and a generated cluster secret) is printed, once. */
  readonly announce?: (text: string) => void;
  /** How long open() waits for a cluster of one to create its repository (default 30 s). */
  readonly standaloneReadyTimeoutMs?: number;
}

/**
 * One running node: storage, the cluster runtime, the HTTP API, and an orderly stop. Everything that waits lives
 * here or below; the rules live in src/content and src/core.
 */
export class ConclaveNode {
  private stopping: Promise<void> | undefined;
  private repositoryBootstrap: Promise<void> | null = null;
  private internalListener: InternalListener | null = null;
  private metricsListener: MetricsListener | null = null;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    private readonly db: Db,
    readonly runtime: ClusterRuntime,
    readonly repository: Repository<WriteOrigin>,
    readonly app: FastifyInstance,
    private readonly context: HttpContext,
    private readonly options: StartOptions,
    private readonly network: ClusterNetwork,
    private readonly replication: BlobReplication,
    private readonly commandServer: CommandServer,
    private readonly adminPassword: AdminPasswordKeeper<WriteOrigin>,
    private readonly jobs: NodeJobs,
    readonly metrics: NodeMetrics,
  ) {}

  static async open(config: Config, log: Logger, options: StartOptions = {}): Promise<ConclaveNode> {
    const db = openDatabase(config.data.dir);
    let runtime: ClusterRuntime | null = null;
    let network: ClusterNetwork | null = null;
    let app: FastifyInstance | null = null;
    let replication: BlobReplication | null = null;
    let metrics: NodeMetrics | null = null;
    try {
      const journal = new JournalStore(db);
      const indexedMs = performance.now();
      const indexed = prepareSearchIndex(db);
      if (indexed > 0) log.info({ nodes: indexed, ms: Math.round(performance.now() - indexedMs) }, 'built the full-text index from the content');
      const content = new ContentTables(db);
      // Releases before token key ids kept the signing key itself here; it signs nothing now and must not linger in
      // the data directory or a copy of it (the key is derived from the cluster secret: auth/tokens.ts).
      db.prepare(`DELETE FROM meta WHERE key = 'token_key'`).run();
      const blobs = await BlobStore.open(join(config.data.dir, 'blobs'));
      const id = nodeId(db);
      const secret = clusterSecret(db, config, options.announce ?? ((text: string) => process.stdout.write(text)));
      network = new ClusterNetwork(config, { id, name: config.node.name }, secret, log);
      const transportAddress = await network.listen();
      const internalAuth = new InternalAuth(secret, id, config.http.internalNoncesMax);
      // Node-to-node HTTP has the transport's protection: TLS with the cluster's CA whenever the transport uses TLS.
      const http = new InternalHttpClient({
        auth: internalAuth,
        tls: nodeTlsOf(config),
        connectionsPerPeerMax: config.replication.peerConnectionsMax,
        idleTimeoutMs: internalIdleTimeoutMs,
      });
      const restoredSnapshot = journal.snapshot();
      const snapshotStore = new SnapshotStore(config.data.dir, restoredSnapshot === undefined ? undefined : fileRefOf(restoredSnapshot));
      if (restoredSnapshot !== undefined && !snapshotStore.hasFile(restoredSnapshot.index)) {
        log.error({ index: restoredSnapshot.index, dir: snapshotStore.dir }, 'the file of the latest snapshot is missing; followers that need it wait for the next one');
      }
      const snapshotFetcher = new SnapshotFetcher(
        {
          incomingDir: snapshotStore.incomingDir,
          selfId: id,
          http,
          // The sender's own word first: the cluster states below may name addresses it has since left.
          peerOf: (message) =>
            message.sender ??
            runtime?.clusterState().nodes.find((n) => n.id === message.from && (n.httpAddress !== undefined || n.internalHttpAddress !== undefined)) ??
            (message.snapshot.data as CoordinatorSnapshotData).clusterState.nodes.find((n) => n.id === message.from) ??
            null,
          transferTimeoutMs: config.replication.snapshotTransferTimeoutMs,
          onVerified: (message) => runtime?.receive(message),
          log,
        },
        getMeta<number>(db, 'applied_index') ?? 0,
      );
      const self: NodeDescriptor = {
        id,
        name: config.node.name,
        address: transportAddress,
        roles: { masterEligible: config.node.masterEligible, votingOnly: config.node.votingOnly },
        version: softwareVersion,
        // Known now unless the port is picked at start (then listen() tells the cluster): joining with it saves a
        // second join just to update the address.
        ...(config.http.port !== 0 ? { httpAddress: formatEndpoint(config.transport.publishHost !== '' ? config.transport.publishHost : config.http.host, config.http.port) } : {}),
        ...(runsInternalListener(config) && config.http.internalPort !== 0
          ? { internalHttpAddress: formatEndpoint(config.transport.publishHost !== '' ? config.transport.publishHost : config.http.host, config.http.internalPort) }
          : {}),
      };
      runtime = new ClusterRuntime(
        db,
        journal,
        content,
        {
          self,
          clusterName: config.cluster.name,
          bootstrap: bootstrapMethod(config),
          tickMs: config.cluster.tickMs,
          electionTimeoutTicks: config.cluster.electionTimeoutTicks,
          heartbeatIntervalTicks: config.cluster.heartbeatIntervalTicks,
          // At least an election timeout each (config/load.ts refuses less).
          nodeFailureTimeoutTicks: Math.ceil(config.cluster.nodeFailureTimeoutMs / config.cluster.tickMs),
          appendBytesMax: config.replication.appendBytesMax,
          inSyncTimeoutTicks: Math.ceil(config.replication.inSyncTimeoutMs / config.cluster.tickMs),
          publishTimeoutTicks: Math.ceil(config.cluster.publishTimeoutMs / config.cluster.tickMs),
          clockDriftPercent: config.cluster.clockDriftPercent,
          readIndexTimeoutMs: config.cluster.readIndexTimeoutMs,
          readIndexWaitersMax: config.cluster.readIndexWaitersMax,
          groupCommitEntriesMax: config.storage.groupCommitEntriesMax,
          groupCommitBytesMax: config.storage.groupCommitBytesMax,
          writeQueueEntriesMax: config.storage.writeQueueEntriesMax,
          writeQueueBytesMax: config.storage.writeQueueBytesMax,
          writeTimeoutMs: config.cluster.writeTimeoutMs,
          walCheckpoint: { intervalMs: config.storage.checkpointIntervalMs, walCheckpointPages: config.storage.walCheckpointPages },
          frameBytesMax: config.transport.frameBytesMax,
          ...testInjectedBug(log),
        },
        log,
        {
          store: snapshotStore,
          fetcher: snapshotFetcher,
          compactionEntriesMin: config.storage.compactionEntriesMin,
          journalRetainEntries: config.storage.journalRetainEntries,
        },
      );
      const blobClient = new BlobClient(http, blobs);
      const pusher = new BlobPusher(runtime, blobClient, { pushTimeoutMs: config.replication.blobPushTimeoutMs, pushesInFlightMax: config.replication.blobPushesInFlightMax }, log);
      const fetcher = new BlobFetcher(
        runtime,
        {
          has: (sha256) => blobs.has(sha256),
          arriving: (sha256) => blobs.arriving(sha256),
          blobReferences: () => content.blobReferences(),
          isBlobReferenced: (sha256) => content.isBlobReferenced(sha256),
        },
        blobClient,
        { queueMax: config.replication.blobFetchQueueMax, concurrency: config.replication.blobFetchConcurrency },
        log,
      );
      const liveRuntime = runtime;
      const pins = new BlobPins();
      const collector = new BlobCollector(
        blobs,
        () => pins.addTo(referencedBlobs(content, journal, liveRuntime.appliedIndex)),
        { intervalMs: config.storage.blobGcIntervalMs, graceMs: config.storage.blobGcGraceMs, batchMax: config.storage.blobGcBatchMax, deferred: () => pins.holdingAll },
        log,
      );
      replication = { http, pusher, fetcher, collector };
      let backups: BackupService | null = null;
      metrics = new NodeMetrics({
        runtime,
        blobs: { files: () => blobs.files(), missing: () => fetcher.queued },
        backupsInProgress: () => backups?.inProgress ?? 0,
        softwareVersion,
        blobScanIntervalMs: config.metrics.blobScanIntervalMs,
        log,
      });
      runtime.readyObserver = metrics.ready;
      runtime.onApplied((entries) => fetcher.onApplied(entries));
      // A snapshot replaces the content: the blobs it references follow from the peers (the start-up scan covers a
      // crash between the install and the fetches).
      runtime.onSnapshotInstalled(() => {
        void fetcher.queueMissing().catch((err: unknown) => log.warn({ err }, 'the scan for blobs after a snapshot install failed'));
      });
      // Writes a replica serves up to the proposal go to the master as commands over the transport; the master
      // answers them with the outcome (src/forwarding/wire.ts). The write router decides, for each write, whether
      // to propose it here or send it; the repository only builds the commands.
      const transport = network.transport;
      const commandClient = new CommandClient(runtime, { send: (nodeId, message) => transport.send(nodeId, message) }, {
        commandsMax: config.http.forwardCommandsMax,
        answerTimeoutMs: config.cluster.writeTimeoutMs + config.http.forwardResponseMarginMs,
      });
      const commandServer = new CommandServer(
        {
          propose: (command) => liveRuntime.propose(command),
          checkCommand: (command) => {
            if (command.type === 'batch') checkBatch(command.operations, config.content, liveRuntime.clusterState());
            if (command.type === 'restore') requireHistory(content.historyRetention());
            if (schemaCommandTypes.has(command.type)) checkSchemasAvailable(liveRuntime.clusterState());
            if (command.type === 'setAccess' || command.type === 'setSearchPolicy') checkAccessAvailable(liveRuntime.clusterState());
          },
          get appliedIndex() {
            return liveRuntime.appliedIndex;
          },
          userByName: (name) => content.userByName(name),
          send: (nodeId, message) => transport.send(nodeId, message),
          now: () => new Date(),
        },
        log,
      );
      commandClient.observe = metrics.forwards.observeCommand;
      network.attachCommands(new CommandChannel(commandClient, commandServer, log));
      const writes = new WriteRouter((command) => liveRuntime.propose(command), commandClient);
      const repository = new Repository<WriteOrigin>(runtime, content, blobs, undefined, pusher, (command, origin) => writes.propose(command, origin));
      if (repository.isBootstrapped && options.adminPassword !== undefined) {
        log.info('the repository exists; CONCLAVE_ADMIN_PASSWORD is used only at the first start and was ignored');
      }
      const tokens = new TokenSigner({
        clusterSecret: secret,
        keyId: () => content.tokenKeyId(),
        ttlSeconds: config.auth.tokenTtlSeconds,
        lifetimeSecondsMax: config.auth.tokenLifetimeSecondsMax,
      });
      const authenticator = new Authenticator(content, tokens, {
        cacheEntriesMax: config.auth.credentialCacheEntriesMax,
        ...config.auth,
      });
      const adminPassword = new AdminPasswordKeeper({
        db,
        repository,
        resetOrigin: adminResetOrigin,
        masterKnown: () => liveRuntime.softState().master !== null,
        announce: options.announce ?? ((text: string) => process.stdout.write(text)),
        log,
        retryMs: config.cluster.writeTimeoutMs,
      });
      backups = new BackupService({
        db,
        blobs,
        pins,
        awaitBlob: (sha256, size, timeoutMs) => fetcher.awaitBlob(sha256, size, timeoutMs),
        self: () => liveRuntime.self(),
        conclaveVersion: softwareVersion,
        tmpDir: join(config.data.dir, 'backups-tmp'),
        concurrentMax: config.backup.concurrentMax,
        workerNice: config.backup.workerNice,
        pacing: { busyBytesPerSecondMax: config.backup.busyBytesPerSecondMax, busyEntriesPerSecondMin: config.backup.busyEntriesPerSecondMin },
        appliedIndex: () => liveRuntime.appliedIndex,
        blobFetchTimeoutMs: config.backup.blobFetchTimeoutMs,
        log,
        observer: metrics.backups,
      });
      const changes = new ChangeFeed(
        content.changes,
        liveRuntime,
        { scanEventsMax: config.changes.scanEventsMax, recentEventsMax: config.changes.recentEventsMax, recentBytesMax: config.changes.recentBytesMax, fanOutIntervalMs: config.changes.fanOutIntervalMs },
      );
      const context: HttpContext = { config, repository, runtime, authenticator, tokens, clusterSecret: secret, internalAuth, blobFetcher: fetcher, snapshots: snapshotStore, backups, restoredOrigin: new RestoredOrigin(db, runtime), changes, metrics, closing: false };
      // The cluster side starts before the HTTP API is built: a returning replica dials its peers and starts taking
      // the entries it missed while Fastify registers its routes, instead of after.
      let node: ConclaveNode | null = null;
      runtime.onChange(() => {
        node?.maybeBootstrapRepository();
        adminPassword.poke();
      });
      network.attach(runtime);
      runtime.start(network);
      app = await buildApp(context, log);
      const jobs = nodeJobs(config, liveRuntime, backups, content, changes, secret, metrics, log);
      node = new ConclaveNode(config, log, db, runtime, repository, app, context, options, network, replication, commandServer, adminPassword, jobs, metrics);
      metrics.start();
      // A change while the API was being built found no node to act on it.
      node.maybeBootstrapRepository();
      collector.start();
      jobs.clusterJobs.start();
      jobs.pruner.start();
      jobs.changePruner.start();
      jobs.historyKeeper.start();
      // Blobs a previous run never got (it stopped before fetching them, or lost them with a disk).
      void node.queueMissingBlobs().catch((err: unknown) => log.warn({ err }, 'the scan for missing blobs failed'));
      // A cluster of one is ready as soon as it has elected itself (one tick) and has its repository.
      if (config.cluster.seeds.length === 0) await node.awaitWritable(options.standaloneReadyTimeoutMs ?? 30_000);
      return node;
    } catch (err) {
      await metrics?.close();
      if (replication !== null) await stopReplication(replication);
      runtime?.close();
      await app?.close().catch(() => undefined);
      await network?.stop().catch(() => undefined);
      db.close();
      throw err;
    }
  }

  /**
   * Queues every blob the content references that is missing here for fetching from the peers; resolves with how
   * many were queued. Runs at start; call it again after replacing the content (a snapshot install).
   */
  queueMissingBlobs(): Promise<number> {
    return this.replication.fetcher.queueMissing();
  }

  /** Takes this node's backups (the HTTP API's and the scheduled ones). */
  get backups(): BackupService {
    return this.context.backups!;
  }

  /** The cluster-exclusive jobs this node runs while master: later issues register their job kinds here. */
  get clusterJobs(): ClusterJobs {
    return this.jobs.clusterJobs;
  }

  /** Runs the blob collector once now (it also runs every storage.blobGcIntervalMs). */
  collectBlobs(): Promise<{ deleted: number; bytesFreed: number }> {
    return this.replication.collector.collect();
  }

  /**
   * For a node that was a member of a multi-node cluster: resolves once it sees a master; rejects with
   * CLUSTER_JOIN_TIMEOUT (and a message listing the operator's choices) if none appears within `timeoutMs`. A
   * quorum could never let it become master alone anyway; this makes the wait visible and ends it, rather than
   * leaving a node up that silently serves stale reads forever (CRX's clustered.txt check, done by the journal).
   */
  async awaitCluster(timeoutMs: number): Promise<void> {
    const self = this.runtime.self().id;
    const others = this.runtime.clusterState().nodes.filter((n) => n.id !== self);
    if (others.length === 0 || this.runtime.softState().master !== null) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        unsubscribe();
        const voters = [...this.runtime.softState().configuration.current].map((id) => others.find((n) => n.id === id)?.name ?? (id === self ? this.config.node.name : id));
        reject(
          new ConclaveError(
            'CLUSTER_JOIN_TIMEOUT',
            `This node was a member of cluster "${this.config.cluster.name}" with ${others.map((n) => n.name).join(', ')}, and found no master within ${timeoutMs} ms. ` +
              `It does not act alone on data that may be stale. Choices: start the other nodes (a majority of the voters ${voters.join(', ')} must be up); ` +
              'check that --seed names them and that the cluster name and secret match; if they are gone for good, run `conclave node unsafe-bootstrap` ' +
              'on the most up-to-date survivor (it loses what only the others had); or run `conclave node detach-cluster` on this node to join it to another cluster.',
            { timeoutMs },
          ),
        );
      }, timeoutMs);
      const unsubscribe = this.runtime.onChange(() => {
        if (this.runtime.softState().master === null) return;
        clearTimeout(timer);
        unsubscribe();
        resolve();
      });
    });
  }

  /** Resolves once the repository exists here and this node is the master (the state of a cluster of one). */
  async awaitWritable(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.repository.isBootstrapped || this.runtime.softState().role !== 'master') {
      if (Date.now() > deadline) throw new ConclaveError('NOT_READY', `The repository was not created within ${timeoutMs} ms; see the log for the cluster's state.`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /**
   * The history a new repository starts with: from its first entry when every member keeps history; else none, and
   * the master starts it once they all do (HistoryKeeper), since a member of an older release would apply the
   * bootstrap without it.
   */
  private bootstrapHistory(): HistoryRetention | undefined {
    if (!everyMemberAtLeast(this.runtime.clusterState(), historySinceVersion)) return undefined;
    return { versionsPerNodeMax: this.config.history.versionsPerNodeMax };
  }

  /**
   * The first master of a new cluster creates the repository (the root and the first admin), once: the entry is
   * replicated like any other, so the other nodes get the same root id, token key and admin.
   */
  private maybeBootstrapRepository(): void {
    if (this.repositoryBootstrap !== null || this.repository.isBootstrapped) return;
    const soft = this.runtime.softState();
    if (soft.role !== 'master' || this.runtime.clusterState().clusterUuid === null) return;
    this.repositoryBootstrap = bootstrap(this.repository, this.log, this.options, this.adminPassword, this.bootstrapHistory()).catch((err: unknown) => {
      // Another master's bootstrap won, or this one lost its mastership: whoever is master next tries again.
      this.log.info({ err }, 'the repository bootstrap did not go through here');
      this.repositoryBootstrap = null;
    });
  }
  /** Starts listening; resolves with the URL actually bound (the port may have been 0). */
  async listen(): Promise<string> {
    await this.app.listen({ host: this.config.http.host, port: this.config.http.port });
    const address = this.app.server.address();
    invariant(address !== null && typeof address === 'object', 'the server is bound to a TCP address');
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `${this.config.http.tlsCertFile !== '' ? 'https' : 'http'}://${host}:${address.port}`;
    if (runsInternalListener(this.config)) {
      this.internalListener = await InternalListener.start(this.app, { host: this.config.http.host, port: this.config.http.internalPort, tls: nodeTlsOf(this.config), log: this.log, handshakeTimeoutMs: this.config.transport.handshakeTimeoutMs, connectionsMax: this.config.http.internalConnectionsMax, refusalLogLinesPerMinuteMax: this.config.transport.refusalLogLinesPerMinuteMax });
    }
    if (this.config.metrics.port !== 0) {
      this.metricsListener = await MetricsListener.start(this.app, {
        host: this.config.metrics.host !== '' ? this.config.metrics.host : this.config.http.host,
        port: this.config.metrics.port,
        https: httpsOptionsOf(this.config),
        handshakeTimeoutMs: this.config.transport.handshakeTimeoutMs,
        connectionsMax: this.config.metrics.connectionsMax,
        log: this.log,
      });
    }
    // Now the HTTP ports are known (they may have been 0): members learn them, for forwards, redirects and status.
    const publishHost = this.config.transport.publishHost;
    const published = (port: number) => (publishHost !== '' ? formatEndpoint(publishHost, port) : `${host}:${port}`);
    this.runtime.updateSelf({
      httpAddress: published(address.port),
      ...(this.internalListener !== null ? { internalHttpAddress: published(this.internalListener.port) } : {}),
    });
    // Only now (and before "listening" is logged): a start that failed before this point (a port in use) kept a
    // generated admin password for the next one.
    await this.adminPassword.onListening();
    this.log.info({ url, port: address.port, internalPort: this.internalListener?.port ?? null, appliedIndex: this.repository.appliedIndex }, 'listening');
    return url;
  }

  /**
   * Graceful stop: refuse new requests, let in-flight ones finish (up to http.shutdownGraceMs), commit what the
   * write queue holds, then close the database cleanly (which checkpoints the WAL).
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.context.closing = true;
    this.log.info('stopping: finishing in-flight requests');
    const grace = setTimeout(() => {
      this.log.warn({ graceMs: this.config.http.shutdownGraceMs }, 'in-flight requests outlived the grace period; closing connections');
      this.app.server.closeAllConnections();
    }, this.config.http.shutdownGraceMs);
    // Commands replicas forwarded are requests too: refused from now on, answered if under way.
    const commandsAnswered = this.commandServer.close(this.config.http.shutdownGraceMs);
    try {
      await Promise.all([this.app.close(), this.internalListener?.close(this.config.http.shutdownGraceMs), this.metricsListener?.close(this.config.http.shutdownGraceMs)]);
    } finally {
      clearTimeout(grace);
      await commandsAnswered;
      // Whatever failed above, the rest still stops: pending writes hear SHUTTING_DOWN, the database closes.
      await this.metrics.close();
      await stopReplication(this.replication);
      this.adminPassword.close();
      this.jobs.clusterJobs.stop();
      this.jobs.pruner.stop();
      this.jobs.changePruner.stop();
      this.jobs.historyKeeper.stop();
      this.context.changes.close();
      this.runtime.close();
      await this.network.stop().catch((err: unknown) => this.log.warn({ err }, 'the transport did not stop cleanly'));
      await this.runtime.storageClosed();
      this.db.close();
    }
    this.log.info('stopped');
  }
}

/**
 * Whether this node runs the internal listener for node-to-node HTTP (src/http/internalListener.ts): when the
 * transport uses TLS (node-to-node HTTP then uses the transport's certificates, not the API's), or when the API does
 * (peers must not have to speak the API's TLS, whose certificate may come from a public CA).
 */
export function runsInternalListener(config: Config): boolean {
  return config.transport.tlsCertFile !== '' || config.http.tlsCertFile !== '';
}

/** The cluster-exclusive jobs this node runs when master (src/jobs/clusterJobs.ts), and the pruning of backups it holds. */
interface NodeJobs {
  readonly clusterJobs: ClusterJobs;
  readonly pruner: BackupPruner;
  /** Keeps the change feed within its retention (proposes on the master only). */
  readonly changePruner: ChangePruner;
  /** Starts content history and keeps it within its retention (proposes on the master only). */
  readonly historyKeeper: HistoryKeeper;
}

function nodeJobs(config: Config, runtime: ClusterRuntime, backups: BackupService, content: ContentTables, feed: ChangeFeed, clusterSecret: string, metrics: NodeMetrics, log: Logger): NodeJobs {
  const clusterJobs = new ClusterJobs(
    runtime,
    { checkIntervalMs: config.jobs.checkIntervalMs, commitTimeoutMs: config.cluster.writeTimeoutMs, retryDelayMsMax: config.jobs.retryDelayMsMax, now: () => Date.now() },
    log,
  );
  const verifyExisting = (path: string, signal: AbortSignal) => existingScheduledBackup(path, { state: () => runtime.clusterState(), verify: (p, s) => backups.verifyFile(p, s), log }, signal);
  const directories = { allowed: config.backup.directoriesAllowed, dataDir: config.data.dir };
  clusterJobs.register(new BackupSchedule({ taker: backups, clusterName: config.cluster.name, verifyExisting, directories, log }));
  clusterJobs.register(
    new SchemaMigrator({
      schemas: content.schemas,
      propose: (command) => runtime.propose(command),
      sinceVersion: schemasSinceVersion,
      batchNodesMax: () => config.schemas.migrationBatchNodesMax,
      nodesPerSecondMax: () => config.schemas.migrationNodesPerSecondMax,
      log,
    }),
  );
  clusterJobs.register(new WebhookDelivery({ feed, lastEventIndex: () => content.changes.lastIndex(), runtime, clusterSecret, settings: config.webhooks, metrics: metrics.feed, log }));
  // The backlog where delivery runs (the master): the events after each active webhook's committed mark.
  metrics.feed.setWebhookBacklog(() =>
    runtime.softState().role !== 'master'
      ? 0
      : Object.values(runtime.clusterState().webhooks)
          .filter((hook) => hook.state === 'active')
          .reduce((sum, hook) => sum + content.changes.countAfter(hook.mark), 0),
  );
  const webhookHolds = new WebhookRetention(content.changes, runtime, { eventsMax: config.webhooks.backlogEventsMax, secondsMax: config.webhooks.backlogSecondsMax }, log);
  return {
    clusterJobs,
    pruner: new BackupPruner(runtime, log, directories),
    changePruner: new ChangePruner(content.changes, runtime, config.changes, log, Date.now, webhookHolds),
    historyKeeper: new HistoryKeeper(content.versions, runtime, config.history, log),
  };
}

/** Stops copying and collecting blobs (before the database closes: both read it). */
async function stopReplication(replication: BlobReplication): Promise<void> {
  replication.pusher.close();
  replication.fetcher.close();
  await replication.collector.stop();
  await replication.http.close().catch(() => undefined);
}

async function bootstrap(repository: Repository<WriteOrigin>, log: Logger, options: StartOptions, keeper: AdminPasswordKeeper<WriteOrigin>, history: HistoryRetention | undefined): Promise<void> {
  let password = options.adminPassword;
  if (password !== undefined && password.length < passwordLengthMin) {
    throw new ConclaveError(
      'INVALID_REQUEST',
      `CONCLAVE_ADMIN_PASSWORD must have at least ${passwordLengthMin} characters; choose a longer one.`,
    );
  }
  const generated = password === undefined;
  password ??= generatePassword();
  // Kept before the proposal and printed once the node listens (adminPassword.ts): neither a crash right after the
  // commit nor a start that fails afterwards (its port in use) may leave an admin whose password nobody saw.
  if (generated) keeper.rememberUnshown(password);
  await repository.bootstrap(await hashPassword(password), history);
  log.info({ appliedIndex: repository.appliedIndex }, 'created a new repository with the user admin');
}

/** The node's permanent id, drawn at the first start of its data directory. */
function nodeId(db: Db): string {
  let id = getMeta<string>(db, 'node_id');
  if (id === undefined) {
    id = randomUUID();
    setMeta(db, 'node_id', id);
  }
  return id;
}

/** Initial master names, expect N, a cluster of one (no seeds), or join only (seeds, no bootstrap setting). */
export function bootstrapMethod(config: Config): BootstrapMethod {
  if (config.cluster.initialMasterNodes.length > 0) return { kind: 'initialMasterNodes', names: config.cluster.initialMasterNodes };
  if (config.cluster.bootstrapExpect > 0) return { kind: 'expect', count: config.cluster.bootstrapExpect };
  if (config.cluster.seeds.length === 0) {
    if (!config.node.masterEligible || config.node.votingOnly) {
      throw new ConclaveError('INVALID_REQUEST', 'A node with no cluster.seeds forms a cluster of one and must be able to lead: give it seeds, or make it master-eligible.');
    }
    return { kind: 'initialMasterNodes', names: [config.node.name] };
  }
  return { kind: 'none' };
}

/**
 * The configured cluster secret, or one generated at the first start, kept in the database's meta table (a file of
 * mode 0600 in a directory of 0700, storage/database.ts; never in a snapshot: snapshotFile.ts copies state-machine
 * keys only).
 */
/**
 * The cluster secret: configured, or — for a node started without one — generated once and kept in DATA/cluster-secret
 * (0600). Never printed: a secret on standard output ends up in journald or `kubectl logs`; the announcement names the
 * file, from which a joining node can take it (`--cluster-secret-file`). A file of its own rather than a row of the
 * database, so that a copy or backup of the database carries nothing that can sign a token. Releases before kept it
 * in the meta table: moved to the file at the next start.
 */
export function clusterSecret(db: Db, config: Config, announce: (text: string) => void): string {
  if (config.cluster.secret !== '') return config.cluster.secret;
  const file = join(config.data.dir, 'cluster-secret');
  if (existsSync(file)) {
    const read = readClusterSecretFile(file);
    if ('problem' in read) throw new ConfigError(`The generated cluster secret of this node is unusable: ${read.problem}.`);
    return read.secret;
  }
  const kept = getMeta<string>(db, 'cluster_secret');
  const secret = kept ?? generateClusterSecret();
  writeFileSync(`${file}.tmp`, `${secret}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  db.prepare(`DELETE FROM meta WHERE key = 'cluster_secret'`).run();
  if (kept === undefined) {
    announce(`\n  Generated a cluster secret in ${file} (mode 0600). Nodes that join this one need the same secret:\n  give them that file (--cluster-secret-file) or its content as CONCLAVE_CLUSTER_SECRET.\n\n`);
  }
  return secret;
}

/**
 * CONCLAVE_TEST_INJECTED_BUG (test-only): a node built with one coordination rule broken, so that the chaos harness
 * can show it catches what the bug breaks (`npm run chaos -- --bug commitBeforeQuorum`). Logged at error level at
 * every start, so that it can never run unnoticed.
 */
function testInjectedBug(log: Logger): { injectedBug?: CoordinatorBug } {
  const name = process.env['CONCLAVE_TEST_INJECTED_BUG'];
  if (name === undefined || name === '') return {};
  const bug = coordinatorBugs.find((b) => b === name);
  if (bug === undefined) throw new ConfigError(`CONCLAVE_TEST_INJECTED_BUG=${name} is not one of ${coordinatorBugs.join(', ')}.`);
  log.error({ injectedBug: bug }, 'THIS NODE IS BROKEN ON PURPOSE (CONCLAVE_TEST_INJECTED_BUG): for the chaos harness only, never for data');
  return { injectedBug: bug };
}
