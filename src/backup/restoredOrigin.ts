import type { Entry } from '../core/types.js';
import { getMeta, setMeta, type Db } from '../storage/database.js';

/** Meta key `conclave restore` writes into the data directory it builds (restore.ts). */
export const restoredFromMetaKey = 'restored_from';

/** Where a node's data came from, when it was restored from a backup, and how a clone caught up since. */
export interface RestoredFrom {
  readonly backupId: string;
  /** The backup's applied index: the node started there. */
  readonly index: number;
  readonly as: 'new-cluster' | 'clone';
  readonly at: string;
  /**
   * A clone's way to the cluster's present: `journal` when the master sent it the entries after the backup's index
   * (the backup saved the copying), `snapshot` when the master no longer had them and sent a snapshot instead;
   * absent until the first of the two happens.
   */
  readonly catchUp?: 'journal' | 'snapshot';
}

interface RuntimeEvents {
  onApplied(listener: (entries: readonly Entry[]) => void): () => void;
  onSnapshotInstalled(listener: () => void): () => void;
}

/**
 * Reads what `conclave restore` recorded and, for a clone that has not caught up yet, records which path its first
 * catch-up took (GET /api/v1/cluster/status shows it as `restoredFrom`). Persisted, so a restart does not forget.
 */
export class RestoredOrigin {
  private value: RestoredFrom | null;
  private unsubscribe: Array<() => void> = [];

  constructor(
    private readonly db: Db,
    runtime: RuntimeEvents,
  ) {
    const text = getMeta<string>(db, restoredFromMetaKey);
    this.value = text === undefined ? null : (JSON.parse(text) as RestoredFrom);
    if (this.value?.as !== 'clone' || this.value.catchUp !== undefined) return;
    const index = this.value.index;
    this.unsubscribe = [
      runtime.onSnapshotInstalled(() => this.record('snapshot')),
      runtime.onApplied((entries) => {
        if (entries.some((e) => e.index > index)) this.record('journal');
      }),
    ];
  }

  get(): RestoredFrom | null {
    return this.value;
  }

  private record(catchUp: 'journal' | 'snapshot'): void {
    if (this.value === null || this.value.catchUp !== undefined) return;
    this.value = { ...this.value, catchUp };
    setMeta(this.db, restoredFromMetaKey, JSON.stringify(this.value));
    for (const stop of this.unsubscribe) stop();
    this.unsubscribe = [];
  }
}
