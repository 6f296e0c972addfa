import type { Logger } from 'pino';

import type { Command } from '../content/commands.js';
import type { SchemaMigration } from '../content/schemaState.js';
import { everyMemberAtLeast } from '../core/clusterState.js';
import type { JobKind, JobRun } from '../jobs/clusterJobs.js';
import type { Committed } from '../node/clusterRuntime.js';
import type { SchemaTables } from '../storage/schemaTables.js';

/** The job's name in the cluster state. */
export const schemaMigrationJobName = 'schema-migration';

export interface SchemaMigratorOptions {
  readonly schemas: SchemaTables;
  readonly propose: (command: Command) => Promise<Committed>;
  /** The release every member must run before a migration batch is proposed (a schema entry exists only then). */
  readonly sinceVersion: string;
  readonly batchNodesMax: () => number;
  /** The fastest the walk may go, in nodes per second; 0: no limit. */
  readonly nodesPerSecondMax: () => number;
  readonly log: Logger;
}

/**
 * Runs schema migrations as a cluster-exclusive job (src/jobs/clusterJobs.ts): on the master that holds the claim,
 * one migration at a time, oldest first, one migrateSchema entry after another. Each entry carries the progress this
 * node read as committed (the migration's afterId, in the content state this node has applied: the claim is applied,
 * so is everything before it); apply() refuses it unless that is still the committed progress, so a batch of a
 * master that lost the claim meanwhile changes nothing and no range is migrated twice or out of order. A new master
 * claims the job and goes on from the committed progress.
 */
export class SchemaMigrator implements JobKind {
  readonly name = schemaMigrationJobName;

  constructor(private readonly options: SchemaMigratorOptions) {}

  private next(): SchemaMigration | undefined {
    return this.options.schemas.pendingMigrations().find((m) => m.state === 'running');
  }

  due(input: Parameters<JobKind['due']>[0]): boolean {
    return everyMemberAtLeast(input.state, this.options.sinceVersion) && this.next() !== undefined;
  }

  async run(run: JobRun): Promise<void> {
    const { log } = this.options;
    const startedMs = run.now();
    let walked = 0;
    for (;;) {
      run.signal.throwIfAborted();
      const migration = this.next();
      if (migration === undefined) return;
      const rate = this.options.nodesPerSecondMax();
      if (rate > 0) await pause(startedMs + (walked / rate) * 1000 - run.now(), run.signal);
      const committed = await this.options.propose({
        type: 'migrateSchema',
        typeName: migration.typeName,
        toVersion: migration.toVersion,
        afterId: migration.afterId,
        nodesMax: this.options.batchNodesMax(),
        time: new Date(run.now()).toISOString(),
      });
      const after = committed.result.migration;
      walked += Math.max(0, (after?.nodesDone ?? 0) - migration.nodesDone);
      if (after?.state === 'failed') {
        log.warn({ type: after.typeName, toVersion: after.toVersion, failure: after.failure }, 'a schema migration stopped at a node it cannot convert; retry or abandon it');
      } else if (after?.state === 'done') {
        log.info({ type: after.typeName, version: after.toVersion, nodes: after.nodesDone, converted: after.nodesConverted }, 'a schema migration finished; its version is in force');
      }
    }
  }
}

/** Waits `ms` (nothing when it is not positive), or until `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
