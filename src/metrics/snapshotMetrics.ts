import { Counter, type Registry } from 'prom-client';

import type { Snapshot } from '../core/types.js';
import type { ClusterRuntime } from '../node/clusterRuntime.js';
import { fileRefOf } from '../storage/snapshotFile.js';

/**
 * Snapshot files moving between nodes. Sent: each request for a snapshot file this node served (a resumed download
 * asks again, and counts again), and the bytes it streamed. Received: each snapshot downloaded, verified and
 * installed here, and its file's size.
 */
export class SnapshotMetrics {
  private readonly transfers: Counter<'direction'>;
  private readonly bytes: Counter<'direction'>;
  private readonly unsubscribe: () => void;

  constructor(registry: Registry, runtime: ClusterRuntime) {
    this.transfers = new Counter({
      name: 'conclave_snapshot_transfers_total',
      help: 'Snapshot transfers: direction="sent" file requests served to followers, direction="received" snapshots installed here.',
      labelNames: ['direction'],
      registers: [registry],
    });
    this.bytes = new Counter({
      name: 'conclave_snapshot_transfer_bytes_total',
      help: 'Bytes of snapshot files: direction="sent" streamed to followers, direction="received" installed here.',
      labelNames: ['direction'],
      registers: [registry],
    });
    for (const direction of ['sent', 'received']) {
      this.transfers.inc({ direction }, 0);
      this.bytes.inc({ direction }, 0);
    }
    this.unsubscribe = runtime.onSnapshotInstalled((snapshot: Snapshot) => {
      this.transfers.inc({ direction: 'received' });
      this.bytes.inc({ direction: 'received' }, fileRefOf(snapshot).bytes);
    });
  }

  /** A transfer of a snapshot file to a follower began (src/http/routes/internalSnapshots.ts). */
  serving(): void {
    this.transfers.inc({ direction: 'sent' });
  }

  /** Bytes of a snapshot file streamed to a follower. */
  sent(bytes: number): void {
    this.bytes.inc({ direction: 'sent' }, bytes);
  }

  close(): void {
    this.unsubscribe();
  }
}
