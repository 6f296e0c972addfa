import { hostname } from 'node:os';
import { isAbsolute } from 'node:path';
import { z } from 'zod';

import { clusterSecretWeakness } from './clusterSecret.js';

/**
 * Every setting, once: its key, type, default, bounds and one line of documentation. The schema, the environment
 * variable names and docs/configuration.md all derive from (or are checked against) this table.
 */
export interface SettingSpec {
  readonly key: string;
  readonly kind: 'string' | 'int' | 'bool' | 'enum' | 'list';
  readonly schema: z.ZodType;
  readonly doc: string;
  /** A secret: its value is never quoted in an error message. */
  readonly secret?: boolean;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const int = (min: number, max: number) => z.number().int().min(min).max(max);

export const settingSpecs: readonly SettingSpec[] = [
  { key: 'node.name', kind: 'string', schema: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." or "-", 1-64 characters').default(defaultNodeName()), doc: 'Name of this node, unique in its cluster. Default: the host name.' },
  { key: 'node.masterEligible', kind: 'bool', schema: z.boolean().default(true), doc: 'Whether this node may vote and be elected master; false makes it a replica that serves but never votes.' },
  { key: 'node.votingOnly', kind: 'bool', schema: z.boolean().default(false), doc: 'Vote but never become master (a tie-breaker); needs node.masterEligible.' },
  { key: 'cluster.name', kind: 'string', schema: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." or "-", 1-64 characters').default('conclave'), doc: 'Name of the cluster; nodes of another name are refused at the handshake.' },
  {
    key: 'cluster.secret',
    kind: 'string',
    secret: true,
    schema: z.string().superRefine((s, ctx) => {
      const weakness = s === '' ? null : clusterSecretWeakness(s);
      if (weakness !== null) ctx.addIssue({ code: 'custom', message: weakness });
    }).default(''),
    doc: 'Shared secret proving membership at the transport handshake (never sent), at least 128 bits (`conclave secret generate` prints one). Set it in the environment or a file (cluster.secretFile), never on a command line. Empty: generated at the first start and printed once.',
  },
  { key: 'cluster.secretFile', kind: 'string', schema: z.string().default(''), doc: 'File holding the cluster secret (instead of cluster.secret); refused when every user of the machine may read it.' },
  { key: 'cluster.seeds', kind: 'list', schema: z.array(z.string().min(1)).max(256).default([]), doc: 'Where to find the cluster: host:port, host, dns:name:port, srv:_service._tcp.name (comma-separated in the environment). None: start as a cluster of one.' },
  { key: 'cluster.initialMasterNodes', kind: 'list', schema: z.array(z.string().min(1)).max(64).default([]), doc: 'First start only: the names of the master-eligible nodes that form the cluster. The same list on each of them.' },
  { key: 'cluster.bootstrapExpect', kind: 'int', schema: int(0, 64).default(0), doc: 'First start only: form the cluster once this many master-eligible nodes see each other (0: off).' },
  { key: 'cluster.noMasterBlock', kind: 'enum', schema: z.enum(['write', 'all']).default('write'), doc: 'Without a master: write refuses writes only (reads are served, marked stale); all refuses reads too.' },
  { key: 'cluster.tickMs', kind: 'int', schema: int(5, 1000).default(50), doc: 'One coordination tick; the timeouts below count ticks.' },
  { key: 'cluster.electionTimeoutTicks', kind: 'int', schema: int(4, 10_000).default(10), doc: 'Ticks without a master before a node campaigns (randomised up to twice as long).' },
  { key: 'cluster.heartbeatIntervalTicks', kind: 'int', schema: int(1, 1000).default(2), doc: 'Ticks between the master\'s heartbeats; well below the election timeout.' },
  { key: 'cluster.nodeFailureTimeoutMs', kind: 'int', schema: int(100, 600_000).default(3000), doc: 'A member silent this long leaves the in-sync set and no longer counts as live for the voting configuration. At least the election timeout (cluster.electionTimeoutTicks × cluster.tickMs).' },
  { key: 'cluster.publishTimeoutMs', kind: 'int', schema: int(100, 600_000).default(30_000), doc: 'The master waits at most this long for in-sync nodes to apply a cluster-state change before the next.' },
  { key: 'cluster.joinTimeoutMs', kind: 'int', schema: int(0, 86_400_000).default(300_000), doc: 'A node that was a member of a multi-node cluster and sees no master this long after it starts exits (code 3) with the choices it has; 0 waits forever.' },
  { key: 'cluster.readConsistency', kind: 'enum', schema: z.enum(['sequential', 'linearizable', 'stale']).default('sequential'), doc: 'Default read mode (a request may ask for another with ?consistency= or X-Conclave-Consistency): sequential sees every acknowledged write, linearizable confirms with the master, stale is whatever this node has.' },
  { key: 'cluster.readIndexTimeoutMs', kind: 'int', schema: int(100, 600_000).default(5000), doc: 'How long a linearizable read (or a sequential one on a node without a read lease) waits for the master to confirm before CLUSTER_NO_MASTER.' },
  { key: 'cluster.readIndexWaitersMax', kind: 'int', schema: int(1, 1_000_000).default(4096), doc: 'Reads waiting for the master\'s confirmation at once; more are refused with OVERLOADED.' },
  { key: 'cluster.clockDriftPercent', kind: 'int', schema: int(1, 50).default(5), doc: 'How far (in percent) the rate of any node\'s monotonic clock may differ from another\'s; read leases are shortened by it. Raise it on hosts with unreliable clocks.' },
  { key: 'cluster.coordinatorMode', kind: 'enum', schema: z.enum(['CUD', 'ALL', 'DISABLED']).default('CUD'), doc: 'What a node that is not the master does with API requests: CUD forwards writes to the master, ALL forwards every request, DISABLED redirects writes (307).' },
  { key: 'cluster.writeTimeoutMs', kind: 'int', schema: int(100, 600_000).default(10_000), doc: 'How long a write waits to be applied before WRITE_OUTCOME_UNKNOWN.' },
  { key: 'replication.appendBytesMax', kind: 'int', schema: int(64 * KiB, 256 * MiB).default(1 * MiB), doc: 'Most bytes of journal entries in one append to a replica (at least one entry is always sent); at most half of transport.frameBytesMax, or the node refuses to start. Larger batches catch up faster.' },
  { key: 'replication.inSyncTimeoutMs', kind: 'int', schema: int(100, 600_000).default(1500), doc: 'An in-sync node silent this long, or that leaves the entries sent to it unanswered or unapplied this long (a full disk, a saturated link), is taken out of the in-sync set; until then writes wait for it (their acknowledgement needs every in-sync node). At least the election timeout (cluster.electionTimeoutTicks × cluster.tickMs).' },
  { key: 'transport.host', kind: 'string', schema: z.string().default(''), doc: 'Address the cluster transport listens on and announces. Empty: http.host.' },
  { key: 'transport.publishHost', kind: 'string', schema: z.string().default(''), doc: 'Host or IP other nodes and clients use to reach this node (for example a pod IP). Empty: transport.host (or http.host).' },
  { key: 'transport.port', kind: 'int', schema: int(0, 65535).default(7500), doc: 'Cluster transport port; 0 picks a free one.' },
  { key: 'transport.tlsCertFile', kind: 'string', schema: z.string().default(''), doc: 'PEM certificate for TLS between nodes (with tlsKeyFile and tlsCaFile); empty: plain TCP.' },
  { key: 'transport.tlsKeyFile', kind: 'string', schema: z.string().default(''), doc: 'PEM private key of tlsCertFile.' },
  { key: 'transport.tlsCaFile', kind: 'string', schema: z.string().default(''), doc: 'PEM CA that signed every node\'s certificate; peers must present one.' },
  { key: 'transport.sendQueueBytesMax', kind: 'int', schema: int(64 * KiB, 1 * GiB).default(64 * MiB), doc: 'Bytes queued for one peer before messages to it are dropped (the protocol resends).' },
  { key: 'transport.handshakeTimeoutMs', kind: 'int', schema: int(100, 600_000).default(5000), doc: 'From a connection\'s start (TLS included) to the end of its handshake; slower ones are cut.' },
  { key: 'transport.handshakesMax', kind: 'int', schema: int(1, 100_000).default(64), doc: 'Inbound connections still in their handshake at once; more are cut at once, so strangers cannot hold every connection slot.' },
  { key: 'transport.handshakesPerSourceMax', kind: 'int', schema: int(1, 100_000).default(8), doc: 'Inbound connections still in their handshake at once from one source address; more from it are cut at once.' },
  { key: 'transport.helloTimeoutMs', kind: 'int', schema: int(100, 600_000).default(1000), doc: 'From accepting an inbound transport connection to its first byte; a connection silent that long is cut. Handshakes from members\' and seeds\' addresses do not count against transport.handshakesMax.' },
  { key: 'transport.refusalLogLinesPerMinuteMax', kind: 'int', schema: int(1, 100_000).default(10), doc: 'Log lines per minute for each kind of refused inbound connection; the next line says how many were left out.' },
  { key: 'transport.frameBytesMax', kind: 'int', schema: int(4 * MiB, 1 * GiB).default(64 * MiB), doc: 'Largest message between nodes; appends carry at most one entry per 2 MiB of it.' },
  { key: 'data.dir', kind: 'string', schema: z.string().min(1).default('./data'), doc: 'Directory for the database, journal and blobs.' },
  { key: 'http.host', kind: 'string', schema: z.string().min(1).default('127.0.0.1'), doc: 'Address the HTTP API listens on.' },
  { key: 'http.port', kind: 'int', schema: int(0, 65535).default(7400), doc: 'HTTP port; 0 picks a free one (the log says which).' },
  { key: 'http.bodyBytesMax', kind: 'int', schema: int(1 * KiB, 64 * MiB).default(2 * MiB), doc: 'Largest JSON request body.' },
  { key: 'http.minIndexWaitMs', kind: 'int', schema: int(0, 600_000).default(10_000), doc: 'How long a request with X-Conclave-Min-Index waits for this node to apply that index before NOT_READY.' },
  { key: 'http.minIndexWaitersMax', kind: 'int', schema: int(1, 1_000_000).default(1024), doc: 'Requests waiting for an index at once; more are refused with OVERLOADED.' },
  { key: 'http.minIndexWaitersPerUserMax', kind: 'int', schema: int(1, 1_000_000).default(64), doc: 'Requests of one user (anonymous: of one source address) waiting for an index at once; more are refused with OVERLOADED, so one client cannot take every waiting slot.' },
  { key: 'http.minIndexAheadEntriesMax', kind: 'int', schema: int(0, Number.MAX_SAFE_INTEGER).default(1_000_000), doc: 'An X-Conclave-Min-Index more than this many entries beyond the commit index this node knows is refused at once with MIN_INDEX_AHEAD instead of waiting.' },
  { key: 'http.forwardConnectionsMax', kind: 'int', schema: int(1, 10_000).default(64), doc: 'Connections a node keeps open to the master for forwarded requests.' },
  { key: 'http.forwardRequestsMax', kind: 'int', schema: int(1, 1_000_000).default(1024), doc: 'Forwarded requests in flight at once (including those waiting for a connection); more are refused with OVERLOADED.' },
  { key: 'http.forwardCommandsMax', kind: 'int', schema: int(1, 1_000_000).default(1024), doc: 'Writes this node has forwarded to the master as commands over the cluster transport and awaits the outcome of; more are refused with OVERLOADED.' },
  { key: 'http.forwardCommandBodyBytesMax', kind: 'int', schema: int(0, 1024 * 1024 * 1024).default(16 * 1024), doc: 'Largest body of a JSON write a node forwards to the master as a command over the cluster transport; larger (or chunked) ones are forwarded as HTTP requests, so bulk bytes never queue ahead of heartbeats on the transport connection. 0 forwards every write as an HTTP request.' },
  { key: 'http.forwardConnectTimeoutMs', kind: 'int', schema: int(100, 600_000).default(3000), doc: 'How long connecting to the master may take before a forwarded request fails with MASTER_UNREACHABLE.' },
  { key: 'http.forwardResponseMarginMs', kind: 'int', schema: int(0, 600_000).default(5000), doc: 'How much longer than cluster.writeTimeoutMs a forwarded request waits for the master\'s answer before WRITE_OUTCOME_UNKNOWN.' },
  { key: 'http.forwardBodyIdleTimeoutMs', kind: 'int', schema: int(100, 600_000).default(30_000), doc: 'Longest pause between two chunks of the master\'s answer to a forwarded request before the answer is cut off.' },
  { key: 'http.tlsCertFile', kind: 'string', schema: z.string().default(''), doc: 'PEM certificate (chain) the HTTP API shows its clients, with http.tlsKeyFile: the API then speaks HTTPS (HTTP/1.1 over TLS) only. Empty: plain HTTP.' },
  { key: 'http.tlsKeyFile', kind: 'string', schema: z.string().default(''), doc: 'PEM private key of http.tlsCertFile (a path: key material never goes on the command line).' },
  { key: 'http.tlsClientCaFile', kind: 'string', schema: z.string().default(''), doc: 'PEM CA whose client certificates the HTTP API requires (mutual TLS); empty: clients need no certificate. Needs http.tlsCertFile.' },
  { key: 'http.internalPort', kind: 'int', schema: int(0, 65535).default(7600), doc: 'Port of the internal listener that takes node-to-node HTTP (forwarded requests, blobs, snapshots) when the transport or the API uses TLS: HTTPS with the transport\'s certificate and CA when the transport uses TLS. 0 picks a free one.' },
  { key: 'http.internalConnectionsMax', kind: 'int', schema: int(1, 100_000).default(256), doc: 'Connections the internal listener holds at once (TLS handshakes included); more are refused. Its TLS handshakes are cut after transport.handshakeTimeoutMs.' },
  { key: 'http.internalNoncesMax', kind: 'int', schema: int(16, 10_000_000).default(100_000), doc: 'Node-to-node requests of the last internal-signature window (60 s) this node remembers to refuse replays; when full it refuses new ones with OVERLOADED (retryable) rather than forget early.' },
  { key: 'http.shutdownGraceMs', kind: 'int', schema: int(0, 600_000).default(15_000), doc: 'On SIGTERM, how long in-flight requests may take to finish before connections are closed.' },
  { key: 'auth.anonymousRead', kind: 'bool', schema: z.boolean().default(false), doc: 'Let requests without credentials read content (never write).' },
  { key: 'auth.tokenTtlSeconds', kind: 'int', schema: int(60, 30 * 24 * 3600).default(3600), doc: 'Lifetime of a bearer token from POST /api/v1/auth/login.' },
  { key: 'auth.tokenLifetimeSecondsMax', kind: 'int', schema: int(60, 365 * 24 * 3600).default(24 * 3600), doc: 'No bearer token older than this is accepted, whatever its expiry says; auth.tokenTtlSeconds may not exceed it.' },
  { key: 'auth.credentialCacheEntriesMax', kind: 'int', schema: int(0, 1_000_000).default(1024), doc: 'Verified Basic credentials kept in memory, so password hashing is not paid on every request.' },
  { key: 'auth.passwordChecksInFlightMax', kind: 'int', schema: int(1, 1024).default(8), doc: 'Password hashes computed at once; more are refused with OVERLOADED, so failed logins cannot starve disk I/O.' },
  { key: 'auth.passwordChecksPerSourceMax', kind: 'int', schema: int(1, 1024).default(2), doc: 'Password checks one source address may have in progress at once; more are refused with RATE_LIMITED, so one client cannot take every check.' },
  { key: 'auth.loginFailuresFree', kind: 'int', schema: int(1, 1000).default(5), doc: 'Failed password checks for one user from one source address that cost nothing; after them, each further attempt from there must wait (RATE_LIMITED).' },
  { key: 'auth.loginDelayMsMin', kind: 'int', schema: int(1, 3_600_000).default(1000), doc: 'The wait after the first failure beyond auth.loginFailuresFree; it doubles with each further failure.' },
  { key: 'auth.loginDelayMsMax', kind: 'int', schema: int(1, 86_400_000).default(900_000), doc: 'The longest wait between attempts for one user from one source address; failures are forgotten once the last is older than this.' },
  { key: 'auth.loginFailureRecordsMax', kind: 'int', schema: int(1, 10_000_000).default(65_536), doc: '(user, source address) pairs whose failed logins are remembered; the least recently failed is forgotten first.' },
  { key: 'auth.loginFailuresPerSourcePerMinuteMax', kind: 'int', schema: int(1, 1_000_000).default(30), doc: 'Failed password checks one source address (an IPv6 /64) may make per minute across all user names; beyond it every check from there is refused with RATE_LIMITED before any hashing.' },
  { key: 'auth.userWritesPerSecondMax', kind: 'int', schema: int(1, 1_000_000).default(2000), doc: 'Writes (any request but GET and HEAD) one user may send to this node per second on average, in bursts of up to two seconds\' worth; more are refused with RATE_LIMITED.' },
  { key: 'auth.passwordChangesPerHourMax', kind: 'int', schema: int(1, 1_000_000).default(10), doc: 'Changes of its own password one user may make per hour on this node; more are refused with RATE_LIMITED.' },
  { key: 'storage.groupCommitEntriesMax', kind: 'int', schema: int(1, 100_000).default(512), doc: 'Most journal entries committed in one fsynced transaction.' },
  { key: 'storage.groupCommitBytesMax', kind: 'int', schema: int(64 * KiB, 1 * GiB).default(8 * MiB), doc: 'Most encoded bytes committed in one transaction.' },
  { key: 'storage.writeQueueEntriesMax', kind: 'int', schema: int(1, 1_000_000).default(10_000), doc: 'Most writes waiting for a commit; more are refused with OVERLOADED.' },
  { key: 'storage.checkpointIntervalMs', kind: 'int', schema: int(10, 60_000).default(100), doc: 'How often a worker thread checkpoints the write-ahead log into the database file, off the event loop, once something was committed.' },
  { key: 'storage.walCheckpointPages', kind: 'int', schema: int(100, 1_000_000).default(16_000), doc: 'WAL pages past which the node checkpoints the rest itself after a commit (on the event loop), so that the WAL starts over.' },
  { key: 'storage.compactionEntriesMin', kind: 'int', schema: int(1, 100_000_000).default(10_000), doc: 'Write a snapshot and compact the journal once this many applied entries are above the latest snapshot.' },
  { key: 'storage.journalRetainEntries', kind: 'int', schema: int(0, 100_000_000).default(1000), doc: 'Applied entries kept in the journal after a compaction, so a follower that lags a little catches up from the journal, not by a snapshot.' },
  { key: 'storage.writeQueueBytesMax', kind: 'int', schema: int(1 * MiB, 16 * GiB).default(64 * MiB), doc: 'Most encoded bytes of writes waiting for a commit; more are refused with OVERLOADED.' },
  { key: 'storage.blobGcIntervalMs', kind: 'int', schema: int(100, 7 * 24 * 3600_000).default(3600_000), doc: 'How often unreferenced blobs are collected (mark and sweep of the blob store).' },
  // At least 30 minutes: longer than the longest an upload can wait between its file and its applied entry
  // (replication.blobPushTimeoutMs plus cluster.writeTimeoutMs, at most 10 minutes each), so that it is never collected.
  { key: 'storage.blobGcGraceMs', kind: 'int', schema: int(30 * 60_000, 365 * 24 * 3600_000).default(24 * 3600_000), doc: 'An unreferenced blob is deleted only once its file is older than this (an upload not yet committed is young).' },
  { key: 'storage.blobGcBatchMax', kind: 'int', schema: int(1, 1_000_000).default(1000), doc: 'Unreferenced blobs the collector deletes in one synchronous step (requests wait for it).' },
  { key: 'replication.blobPushTimeoutMs', kind: 'int', schema: int(100, 600_000).default(60_000), doc: 'How long the master copies an upload to other voters before refusing the write with BLOB_NOT_REPLICATED.' },
  { key: 'replication.blobPushesInFlightMax', kind: 'int', schema: int(1, 10_000).default(64), doc: 'Blob copies (one blob to one peer) the master runs at once; an upload needing more is refused with OVERLOADED.' },
  { key: 'replication.blobFetchQueueMax', kind: 'int', schema: int(1, 10_000_000).default(10_000), doc: 'Missing blobs a node queues for fetching from its peers; more wait for the next scan.' },
  { key: 'replication.blobFetchConcurrency', kind: 'int', schema: int(1, 256).default(4), doc: 'Missing blobs fetched at once.' },
  { key: 'replication.blobReadWaitMs', kind: 'int', schema: int(0, 600_000).default(10_000), doc: 'How long a read of a binary whose blob is not here yet waits for it to be fetched before NOT_READY.' },
  { key: 'replication.peerConnectionsMax', kind: 'int', schema: int(1, 256).default(8), doc: 'HTTP connections to one peer for node-to-node transfers (blobs, snapshots).' },
  { key: 'replication.snapshotTransfersMax', kind: 'int', schema: int(1, 64).default(2), doc: 'Snapshot downloads this node serves at once; more are refused with OVERLOADED (the follower retries).' },
  { key: 'replication.snapshotChunkBytes', kind: 'int', schema: int(4 * KiB, 16 * MiB).default(1 * MiB), doc: 'Bytes read from a snapshot file at a time while serving it.' },
  { key: 'replication.snapshotBytesPerSecondMax', kind: 'int', schema: int(0, Number.MAX_SAFE_INTEGER).default(0), doc: 'Pace of each snapshot transfer this node serves, in bytes per second (0: as fast as the network goes).' },
  { key: 'replication.snapshotTransferTimeoutMs', kind: 'int', schema: int(1000, 3_600_000).default(30_000), doc: 'A snapshot download that receives no byte for this long is broken off and resumed.' },
  { key: 'content.binaryBytesMax', kind: 'int', schema: int(1, Number.MAX_SAFE_INTEGER).default(1 * GiB), doc: 'Largest binary upload, in bytes.' },
  { key: 'content.batchOperationsMax', kind: 'int', schema: int(1, 10_000).default(100), doc: 'Most operations in one POST /api/v1/batch; more are refused with BATCH_TOO_LARGE.' },
  { key: 'content.batchBytesMax', kind: 'int', schema: int(1 * KiB, 64 * MiB).default(1 * MiB), doc: 'Most bytes of JSON in the operations of one POST /api/v1/batch (one journal entry); more are refused with BATCH_TOO_LARGE.' },
  { key: 'content.pageSizeDefault', kind: 'int', schema: int(1, 10_000).default(50), doc: 'Page size of queries and child listings when none is asked for.' },
  { key: 'content.pageSizeMax', kind: 'int', schema: int(1, 10_000).default(1000), doc: 'Largest page size a client may ask for.' },
  { key: 'content.pageBytesMax', kind: 'int', schema: int(64 * KiB, 256 * MiB).default(4 * MiB), doc: 'Most bytes of nodes in one page of a child listing or query: a page stops early at this size (with a cursor to continue; at least one node is always sent).' },
  { key: 'history.versionsPerNodeMax', kind: 'int', schema: int(2, 1_000_000).default(100), doc: 'Versions each content node keeps in its history, the current one included (a delete counts as one); older ones go when the node changes again. The master puts its value into the journal, so every node keeps the same versions.' },
  { key: 'history.retainSeconds', kind: 'int', schema: int(0, 100 * 365 * 86_400).default(365 * 86_400), doc: 'Versions superseded longer ago than this are dropped (a deleted node\'s whole history once its delete is that old); 0 keeps them whatever their age. Current versions always stay.' },
  { key: 'history.pruneIntervalMs', kind: 'int', schema: int(100, 86_400_000).default(60_000), doc: 'How often the master checks whether versions have outlived history.retainSeconds, and proposes dropping them.' },
  { key: 'history.pruneBatchVersionsMax', kind: 'int', schema: int(1, 1_000_000).default(10_000), doc: 'Most versions one pruning entry drops; more go in the next entry at once.' },
  { key: 'schemas.migrationBatchNodesMax', kind: 'int', schema: int(1, 100_000).default(100), doc: 'Most nodes one batch of a schema migration converts: one journal entry, applied in one transaction on every node (writes wait behind it meanwhile: larger batches migrate faster and delay writes longer).' },
  { key: 'schemas.migrationNodesPerSecondMax', kind: 'int', schema: int(0, 10_000_000).default(0), doc: 'The fastest a schema migration may convert nodes, so that it leaves room for the writes; 0: as fast as the cluster applies its batches.' },
  { key: 'search.queryCharsMax', kind: 'int', schema: int(16, 10_000).default(512), doc: 'Longest full-text query GET /api/v1/search takes, in characters.' },
  { key: 'search.queryTermsMax', kind: 'int', schema: int(1, 256).default(16), doc: 'Most words and phrases one full-text query holds.' },
  { key: 'search.candidatesMax', kind: 'int', schema: int(100, 10_000_000).default(20_000), doc: 'Most documents a full-text query may match before the filters and ranking: every match is ranked, so a broader query is refused (SEARCH_TOO_BROAD) rather than left to take the node\'s time.' },
  { key: 'search.scanMatchesMax', kind: 'int', schema: int(1000, 100_000_000).default(200_000), doc: 'For a caller who may not read every node, the most matches a full-text query may read while counting those it may read (each is looked up); past it the query is refused as too broad, however few of them it may read.' },
  { key: 'search.totalMax', kind: 'int', schema: int(1, 10_000_000).default(1000), doc: 'A search counts its results after the filters up to this many; past it the total is reported as a lower bound.' },
  { key: 'search.pageSizeDefault', kind: 'int', schema: int(1, 1000).default(20), doc: 'Results in one page of GET /api/v1/search when no limit is asked for.' },
  { key: 'search.pageSizeMax', kind: 'int', schema: int(1, 1000).default(100), doc: 'Most results one page of GET /api/v1/search holds.' },
  { key: 'search.snippetTokens', kind: 'int', schema: int(1, 64).default(16), doc: 'Words in the snippet of each search result.' },
  { key: 'changes.retainEvents', kind: 'int', schema: int(0, 1_000_000_000).default(100_000), doc: 'The change feed keeps at most this many of its newest events (about 200 bytes each, on every node); the master prunes older ones through the journal, so every node keeps the same history.' },
  { key: 'changes.retainSeconds', kind: 'int', schema: int(0, 10 * 365 * 86_400).default(7 * 86_400), doc: 'The change feed drops events older than this (by the time of the write that made them).' },
  { key: 'changes.pruneIntervalMs', kind: 'int', schema: int(100, 86_400_000).default(10_000), doc: 'How often the master checks whether the change feed holds more than its retention, and proposes pruning.' },
  { key: 'changes.pruneBatchEventsMax', kind: 'int', schema: int(1, 10_000_000).default(10_000), doc: 'Most events one pruning entry drops (whole entries: a little more when an entry made many); more go in the next round.' },
  { key: 'changes.pageSizeDefault', kind: 'int', schema: int(1, 100_000).default(100), doc: 'Events in one page of GET /api/v1/changes when no limit is asked for.' },
  { key: 'changes.pageSizeMax', kind: 'int', schema: int(1, 100_000).default(1000), doc: 'Most events a client may ask for in one page of GET /api/v1/changes.' },
  { key: 'changes.scanEventsMax', kind: 'int', schema: int(1, 10_000_000).default(10_000), doc: 'Most events one page (or one step of a stream) reads, matching its filter or not: a narrow filter answers a short page with `next`, never a long scan.' },
  { key: 'changes.recentEventsMax', kind: 'int', schema: int(0, 10_000_000).default(10_000), doc: 'The newest change-feed events each node keeps in memory with their JSON, so that the readers following the feed closely cost one read of the table per applied batch, not one each.' },
  { key: 'changes.recentBytesMax', kind: 'int', schema: int(0, 1 * GiB).default(16 * MiB), doc: 'Most bytes of JSON of the change-feed events kept in memory (changes.recentEventsMax): events with long paths take fewer of them.' },
  { key: 'changes.fanOutIntervalMs', kind: 'int', schema: int(0, 1000).default(5), doc: 'Waiting change-feed readers (streams, long-polls) hear of new events at most this often: one wake-up each for many applied batches. The delay it adds to an event is at most this.' },
  { key: 'changes.waitSecondsMax', kind: 'int', schema: int(0, 3600).default(60), doc: 'Longest long-poll a client may ask for (wait=SECONDS).' },
  { key: 'changes.subscribersMax', kind: 'int', schema: int(0, 100_000).default(1000), doc: 'Event streams and long-polls this node serves at once; more are refused with OVERLOADED.' },
  { key: 'changes.subscribersPerUserMax', kind: 'int', schema: int(1, 100_000).default(16), doc: 'Event streams and long-polls one user (anonymous callers: one source address) holds at once on this node, so that nobody takes every slot.' },
  { key: 'changes.subscriberBufferBytesMax', kind: 'int', schema: int(4 * KiB, 256 * MiB).default(1 * MiB), doc: 'Bytes an event stream may have waiting in its socket before the node stops reading events for it (it resumes when the client reads).' },
  { key: 'changes.subscriberStallMsMax', kind: 'int', schema: int(100, 3_600_000).default(30_000), doc: 'A stream whose client reads nothing for this long while its buffer is full is cut, with a final event naming the position to resume from; if the client still reads nothing for as long again, its connection is closed.' },
  { key: 'changes.heartbeatMs', kind: 'int', schema: int(100, 600_000).default(5000), doc: 'An event stream sends a comment line this often when no event goes out, so proxies and clients see it alive.' },
  { key: 'backup.concurrentMax', kind: 'int', schema: int(1, 64).default(2), doc: 'Backups this node writes at once (each first writes a state file as large as the content); more are refused with BACKUPS_BUSY.' },
  { key: 'backup.workerNice', kind: 'int', schema: int(0, 19).default(10), doc: 'Nice value (Linux, per thread) of the worker threads that read the state for a backup: above 0, a backup takes the CPU that serving leaves, and slows down under load instead of slowing the writes.' },
  { key: 'backup.busyBytesPerSecondMax', kind: 'int', schema: int(0, 64 * GiB).refine((v) => v === 0 || v >= MiB, '0 (never paced) or at least 1 MiB a second').default(32 * MiB), doc: 'Bytes a second a backup streams at most while the cluster commits writes (backup.busyEntriesPerSecondMin or more entries a second applied on this node), so that it costs the writes little; on a quiet cluster a backup goes at full speed. 0: never paced; otherwise at least 1 MiB.' },
  { key: 'backup.busyEntriesPerSecondMin', kind: 'int', schema: int(1, 1_000_000).default(20), doc: 'Entries applied a second from which this node counts the cluster as writing, and paces backups (backup.busyBytesPerSecondMax).' },
  { key: 'backup.blobFetchTimeoutMs', kind: 'int', schema: int(0, 3_600_000).default(60_000), doc: 'How long a backup waits for a blob this node lacks to be fetched from a peer before it fails with BACKUP_BLOB_MISSING.' },
  { key: 'backup.requestBytesMax', kind: 'int', schema: int(64 * KiB, 1 * GiB).default(64 * MiB), doc: 'Largest body of POST /api/v1/admin/backup (an incremental backup names every blob of its base: 67 bytes each).' },
  { key: 'backup.directoriesAllowed', kind: 'list', schema: z.array(z.string().min(1).max(4096).refine((p) => isAbsolute(p), 'an absolute path')).max(64).default([]), doc: 'Directories (absolute paths) under which scheduled backups may be written and pruned (comma-separated in the environment). The backup.schedule.directory of the cluster must be one of them or under one, and not inside data.dir; none: scheduled backups are refused on this node.' },
  { key: 'metrics.access', kind: 'enum', schema: z.enum(['role', 'open']).default('role'), doc: 'Who may read GET /metrics: role needs credentials of a user with any role (never anonymous, whatever auth.anonymousRead says); open serves it without credentials, on the listener of metrics.port only (the API\'s port always asks for credentials).' },
  { key: 'metrics.port', kind: 'int', schema: int(0, 65535).default(0), doc: 'Port of a listener of its own that serves GET /metrics and nothing else (HTTPS when the API uses TLS); 0: none, /metrics is served on the API\'s port only.' },
  { key: 'metrics.host', kind: 'string', schema: z.string().default(''), doc: 'Address the listener of metrics.port listens on. Empty: http.host.' },
  { key: 'metrics.connectionsMax', kind: 'int', schema: int(1, 10_000).default(16), doc: 'Connections the listener of metrics.port holds at once; more are refused (scrapers need one or two each).' },
  { key: 'metrics.blobScanIntervalMs', kind: 'int', schema: int(1000, 86_400_000).default(300_000), doc: 'How often the blob store is walked to measure its files and bytes for conclave_blob_store_bytes (the walk stats every file, so not at every scrape).' },
  { key: 'log.level', kind: 'enum', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'), doc: 'Least severe log level written.' },
  { key: 'log.format', kind: 'enum', schema: z.enum(['auto', 'json', 'pretty']).default('auto'), doc: 'json for machines, pretty for people; auto is pretty on a terminal.' },
  { key: 'jobs.checkIntervalMs', kind: 'int', schema: int(100, 600_000).default(1000), doc: 'How often the master asks each cluster-exclusive job (scheduled backups) whether it has work; a job starts at most this late.' },
  { key: 'jobs.retryDelayMsMax', kind: 'int', schema: int(1000, 86_400_000).default(300_000), doc: 'After a failed run of a cluster-exclusive job (a claim or commit that did not go through), the master waits jobs.checkIntervalMs doubled per failure in a row, up to this, before the next.' },
  { key: 'webhooks.max', kind: 'int', schema: int(0, 256).default(32), doc: 'Most webhooks the cluster holds (checked by the master at registration; 256 at most); 0 refuses every registration.' },
  { key: 'webhooks.hostsAllowed', kind: 'list', schema: z.array(z.string().min(1).max(253)).max(256).default([]), doc: 'Hosts (names or IP literals, case-insensitive, exact) webhooks may target (comma-separated in the environment); empty: any host. Set it: whether hooks may reach private networks and this cluster\'s own hosts is the operator\'s call.' },
  { key: 'webhooks.privateAddressesAllowed', kind: 'bool', schema: z.boolean().default(false), doc: 'Whether webhooks may deliver to loopback, private, shared, link-local (cloud metadata), multicast or reserved addresses, checked on the address connected to after DNS. Off: a hook can reach only public addresses; turn it on for receivers inside your own network.' },
  { key: 'webhooks.deliveryTimeoutMs', kind: 'int', schema: int(100, 600_000).default(10_000), doc: 'How long one delivery (connect, send, the receiver\'s answer) may take before it counts as failed and is retried.' },
  { key: 'webhooks.batchEventsMax', kind: 'int', schema: int(1, 10_000).default(1000), doc: 'Most events in one delivery (a POST of {"events": [...]}, in feed order; about 300 bytes each). Deliveries to one hook go one at a time, so this bounds how fast a hook can keep up: at 100, a receiver 100 ms away falls behind past 1,000 writes/s.' },
  { key: 'webhooks.responseBytesMax', kind: 'int', schema: int(0, 64 * KiB).default(4 * KiB), doc: 'Bytes of a receiver\'s answer read (for the error shown); past it the connection is cut.' },
  { key: 'webhooks.retryDelayMsMin', kind: 'int', schema: int(10, 3_600_000).default(1000), doc: 'After a failed delivery the webhook waits this long, doubled per failure in a row up to webhooks.retryDelayMsMax, before sending the same events again.' },
  { key: 'webhooks.retryDelayMsMax', kind: 'int', schema: int(10, 86_400_000).default(300_000), doc: 'Longest wait between two attempts of a failing webhook.' },
  { key: 'webhooks.markCommitIntervalMs', kind: 'int', schema: int(10, 600_000).default(1000), doc: 'How often the master commits the delivered marks (and failures) of its webhooks through the journal: after a failover, a receiver may see again what was delivered within this long.' },
  { key: 'webhooks.backlogEventsMax', kind: 'int', schema: int(0, 1_000_000_000).default(1_000_000), doc: 'Feed events an active webhook may hold back from retention (events after its mark); past it, when retention would drop them, the webhook is marked broken (CHANGES_COMPACTED) and the feed is pruned.' },
  { key: 'webhooks.backlogSecondsMax', kind: 'int', schema: int(0, 10 * 365 * 86_400).default(30 * 86_400), doc: 'How old the oldest event an active webhook holds back from retention may be; past it, when retention would drop it, the webhook is marked broken with CHANGES_COMPACTED, as past webhooks.backlogEventsMax.' },
];

function defaultNodeName(): string {
  const name = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64);
  return name.length > 0 ? name : 'conclave';
}

/** CONCLAVE_ + the key in upper snake case: http.bodyBytesMax → CONCLAVE_HTTP_BODY_BYTES_MAX. */
export function envNameOf(key: string): string {
  return `CONCLAVE_${key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

/** CONCLAVE_* variables that are not settings. */
/**
 * CONCLAVE_TEST_INJECTED_BUG is test-only: it builds the node with one coordination rule broken on purpose (see
 * CoordinatorBug), so that the chaos harness can prove it catches the breakage. Never set it anywhere else.
 */
export const envNonSettings = ['CONCLAVE_ADMIN_PASSWORD', 'CONCLAVE_CONFIG', 'CONCLAVE_TEST_INJECTED_BUG'] as const;

export interface Config {
  node: { name: string; masterEligible: boolean; votingOnly: boolean };
  cluster: {
    name: string;
    secret: string;
    secretFile: string;
    seeds: string[];
    initialMasterNodes: string[];
    bootstrapExpect: number;
    noMasterBlock: 'write' | 'all';
    coordinatorMode: 'CUD' | 'ALL' | 'DISABLED';
    tickMs: number;
    electionTimeoutTicks: number;
    heartbeatIntervalTicks: number;
    nodeFailureTimeoutMs: number;
    publishTimeoutMs: number;
    joinTimeoutMs: number;
    readConsistency: 'sequential' | 'linearizable' | 'stale';
    readIndexTimeoutMs: number;
    readIndexWaitersMax: number;
    clockDriftPercent: number;
    writeTimeoutMs: number;
  };
  transport: {
    host: string;
    publishHost: string;
    port: number;
    tlsCertFile: string;
    tlsKeyFile: string;
    tlsCaFile: string;
    sendQueueBytesMax: number;
    frameBytesMax: number;
    handshakeTimeoutMs: number;
    handshakesMax: number;
    handshakesPerSourceMax: number;
    helloTimeoutMs: number;
    refusalLogLinesPerMinuteMax: number;
  };
  data: { dir: string };
  http: {
    host: string;
    port: number;
    bodyBytesMax: number;
    minIndexWaitMs: number;
    minIndexWaitersMax: number;
    minIndexWaitersPerUserMax: number;
    minIndexAheadEntriesMax: number;
    forwardConnectionsMax: number;
    forwardRequestsMax: number;
    forwardCommandsMax: number;
    forwardCommandBodyBytesMax: number;
    forwardConnectTimeoutMs: number;
    forwardResponseMarginMs: number;
    forwardBodyIdleTimeoutMs: number;
    shutdownGraceMs: number;
    tlsCertFile: string;
    tlsKeyFile: string;
    tlsClientCaFile: string;
    internalPort: number;
    internalConnectionsMax: number;
    internalNoncesMax: number;
  };
  auth: {
    anonymousRead: boolean;
    tokenTtlSeconds: number;
    tokenLifetimeSecondsMax: number;
    credentialCacheEntriesMax: number;
    passwordChecksInFlightMax: number;
    passwordChecksPerSourceMax: number;
    loginFailuresFree: number;
    loginDelayMsMin: number;
    loginDelayMsMax: number;
    loginFailureRecordsMax: number;
    loginFailuresPerSourcePerMinuteMax: number;
    userWritesPerSecondMax: number;
    passwordChangesPerHourMax: number;
  };
  storage: {
    groupCommitEntriesMax: number;
    groupCommitBytesMax: number;
    writeQueueEntriesMax: number;
    writeQueueBytesMax: number;
    blobGcIntervalMs: number;
    blobGcGraceMs: number;
    blobGcBatchMax: number;
    compactionEntriesMin: number;
    journalRetainEntries: number;
    checkpointIntervalMs: number;
    walCheckpointPages: number;
  };
  replication: {
    appendBytesMax: number;
    inSyncTimeoutMs: number;
    blobPushTimeoutMs: number;
    blobPushesInFlightMax: number;
    blobFetchQueueMax: number;
    blobFetchConcurrency: number;
    blobReadWaitMs: number;
    peerConnectionsMax: number;
    snapshotTransfersMax: number;
    snapshotChunkBytes: number;
    snapshotBytesPerSecondMax: number;
    snapshotTransferTimeoutMs: number;
  };
  content: { binaryBytesMax: number; batchOperationsMax: number; batchBytesMax: number; pageSizeDefault: number; pageSizeMax: number; pageBytesMax: number };
  history: { versionsPerNodeMax: number; retainSeconds: number; pruneIntervalMs: number; pruneBatchVersionsMax: number };
  schemas: { migrationBatchNodesMax: number; migrationNodesPerSecondMax: number };
  search: { queryCharsMax: number; queryTermsMax: number; candidatesMax: number; scanMatchesMax: number; totalMax: number; pageSizeDefault: number; pageSizeMax: number; snippetTokens: number };
  changes: {
    retainEvents: number;
    retainSeconds: number;
    pruneIntervalMs: number;
    pruneBatchEventsMax: number;
    pageSizeDefault: number;
    pageSizeMax: number;
    scanEventsMax: number;
    recentEventsMax: number;
    recentBytesMax: number;
    fanOutIntervalMs: number;
    waitSecondsMax: number;
    subscribersMax: number;
    subscribersPerUserMax: number;
    subscriberBufferBytesMax: number;
    subscriberStallMsMax: number;
    heartbeatMs: number;
  };
  backup: { concurrentMax: number; workerNice: number; busyBytesPerSecondMax: number; busyEntriesPerSecondMin: number; blobFetchTimeoutMs: number; requestBytesMax: number; directoriesAllowed: string[] };
  metrics: { access: 'role' | 'open'; port: number; host: string; connectionsMax: number; blobScanIntervalMs: number };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'; format: 'auto' | 'json' | 'pretty' };
  jobs: { checkIntervalMs: number; retryDelayMsMax: number };
  webhooks: {
    max: number;
    hostsAllowed: string[];
    privateAddressesAllowed: boolean;
    deliveryTimeoutMs: number;
    batchEventsMax: number;
    responseBytesMax: number;
    retryDelayMsMin: number;
    retryDelayMsMax: number;
    markCommitIntervalMs: number;
    backlogEventsMax: number;
    backlogSecondsMax: number;
  };
}
