import { hostname } from 'node:os';
import { z } from 'zod';

/**
 * Every setting, once: its key, type, default, bounds and one line of documentation. The schema, the environment
 * variable names and docs/configuration.md all derive from (or are checked against) this table.
 */
export interface SettingSpec {
  readonly key: string;
  readonly kind: 'string' | 'int' | 'bool' | 'enum';
  readonly schema: z.ZodType;
  readonly doc: string;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const int = (min: number, max: number) => z.number().int().min(min).max(max);

export const settingSpecs: readonly SettingSpec[] = [
  { key: 'node.name', kind: 'string', schema: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." or "-", 1-64 characters').default(defaultNodeName()), doc: 'Name of this node, unique in its cluster. Default: the host name.' },
  { key: 'data.dir', kind: 'string', schema: z.string().min(1).default('./data'), doc: 'Directory for the database, journal and blobs.' },
  { key: 'http.host', kind: 'string', schema: z.string().min(1).default('127.0.0.1'), doc: 'Address the HTTP API listens on.' },
  { key: 'http.port', kind: 'int', schema: int(0, 65535).default(7400), doc: 'HTTP port; 0 picks a free one (the log says which).' },
  { key: 'http.bodyBytesMax', kind: 'int', schema: int(1 * KiB, 64 * MiB).default(2 * MiB), doc: 'Largest JSON request body.' },
  { key: 'http.shutdownGraceMs', kind: 'int', schema: int(0, 600_000).default(15_000), doc: 'On SIGTERM, how long in-flight requests may take to finish before connections are closed.' },
  { key: 'auth.anonymousRead', kind: 'bool', schema: z.boolean().default(false), doc: 'Let requests without credentials read content (never write).' },
  { key: 'auth.tokenTtlSeconds', kind: 'int', schema: int(60, 30 * 24 * 3600).default(3600), doc: 'Lifetime of a bearer token from POST /api/v1/auth/login.' },
  { key: 'auth.credentialCacheEntriesMax', kind: 'int', schema: int(0, 1_000_000).default(1024), doc: 'Verified Basic credentials kept in memory, so password hashing is not paid on every request.' },
  { key: 'auth.passwordChecksInFlightMax', kind: 'int', schema: int(1, 1024).default(8), doc: 'Password hashes computed at once; more are refused with OVERLOADED, so failed logins cannot starve disk I/O.' },
  { key: 'storage.groupCommitEntriesMax', kind: 'int', schema: int(1, 100_000).default(512), doc: 'Most journal entries committed in one fsynced transaction.' },
  { key: 'storage.groupCommitBytesMax', kind: 'int', schema: int(64 * KiB, 1 * GiB).default(8 * MiB), doc: 'Most encoded bytes committed in one transaction.' },
  { key: 'storage.writeQueueEntriesMax', kind: 'int', schema: int(1, 1_000_000).default(10_000), doc: 'Most writes waiting for a commit; more are refused with OVERLOADED.' },
  { key: 'storage.writeQueueBytesMax', kind: 'int', schema: int(1 * MiB, 16 * GiB).default(64 * MiB), doc: 'Most encoded bytes of writes waiting for a commit; more are refused with OVERLOADED.' },
  { key: 'content.binaryBytesMax', kind: 'int', schema: int(1, Number.MAX_SAFE_INTEGER).default(1 * GiB), doc: 'Largest binary upload, in bytes.' },
  { key: 'content.pageSizeDefault', kind: 'int', schema: int(1, 10_000).default(50), doc: 'Page size of queries and child listings when none is asked for.' },
  { key: 'content.pageSizeMax', kind: 'int', schema: int(1, 10_000).default(1000), doc: 'Largest page size a client may ask for.' },
  { key: 'log.level', kind: 'enum', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'), doc: 'Least severe log level written.' },
  { key: 'log.format', kind: 'enum', schema: z.enum(['auto', 'json', 'pretty']).default('auto'), doc: 'json for machines, pretty for people; auto is pretty on a terminal.' },
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
export const envNonSettings = ['CONCLAVE_ADMIN_PASSWORD', 'CONCLAVE_CONFIG'] as const;

export interface Config {
  node: { name: string };
  data: { dir: string };
  http: { host: string; port: number; bodyBytesMax: number; shutdownGraceMs: number };
  auth: { anonymousRead: boolean; tokenTtlSeconds: number; credentialCacheEntriesMax: number; passwordChecksInFlightMax: number };
  storage: { groupCommitEntriesMax: number; groupCommitBytesMax: number; writeQueueEntriesMax: number; writeQueueBytesMax: number };
  content: { binaryBytesMax: number; pageSizeDefault: number; pageSizeMax: number };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'; format: 'auto' | 'json' | 'pretty' };
}
