import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

import type { ClusterState, NodeDescriptor } from '../core/clusterState.js';
import { hasJointQuorum } from '../core/quorum.js';
import type { SoftState } from '../core/types.js';
import { ConclaveError } from '../errors/catalogue.js';

/** What the pusher needs of the runtime: who leads, who votes, who is a member. */
export interface PusherRuntime {
  softState(): SoftState;
  clusterState(): ClusterState;
  self(): NodeDescriptor;
}

/** What the pusher needs of the transfer client (BlobClient). */
export interface BlobPeers {
  has(peer: NodeDescriptor, sha256: string, signal?: AbortSignal): Promise<boolean>;
  push(peer: NodeDescriptor, sha256: string, size: number, signal?: AbortSignal): Promise<void>;
}

export interface BlobPusherOptions {
  /** How long replicate() waits for a quorum to hold the blob. */
  readonly pushTimeoutMs: number;
  /** Copies (one blob to one peer) in flight at once, for every upload together. */
  readonly pushesInFlightMax: number;
}

const retryDelayMsMin = 100;
const retryDelayMsMax = 2000;

/**
 * On the master, between storing an upload and proposing the entry that references it: copies the blob to the
 * other members until a quorum of the voting configuration holds it (a quorum of both configurations while one
 * changes), this node included. A committed entry is on a quorum of journals; with this, its bytes are on a quorum
 * of disks too, so any master a future election can pick (it holds the entry) finds the bytes on some voter, and
 * losing a minority never loses an acknowledged binary.
 *
 * The members beyond the quorum get their copy in the background (bounded by pushesInFlightMax), so replicas
 * usually hold the blob before they apply the entry; a replica that still lacks it fetches it (blobFetcher.ts).
 */
export class BlobPusher {
  private inFlight = 0;
  private readonly closing = new AbortController();

  constructor(
    private readonly runtime: PusherRuntime,
    private readonly peers: BlobPeers,
    private readonly options: BlobPusherOptions,
    private readonly log: Logger,
  ) {}

  /** Copies in flight now (for tests and metrics). */
  get pushesInFlight(): number {
    return this.inFlight;
  }

  /**
   * Resolves once a quorum holds the blob; rejects with BLOB_NOT_REPLICATED when none does within pushTimeoutMs
   * (the caller then proposes nothing), or OVERLOADED when too many copies are in flight already.
   */
  async replicate(sha256: string, size: number): Promise<void> {
    const soft = this.runtime.softState();
    // Not the master: the proposal that follows is refused with the master's name; copying would be wasted.
    if (soft.role !== 'master') return;
    // An empty binary is served without a file: no node needs its bytes.
    if (size === 0) return;
    const selfId = this.runtime.self().id;
    const holders = new Set([selfId]);
    const configuration = soft.configuration;
    const voters = new Set([...configuration.current, ...(configuration.next ?? [])]);
    const members = this.runtime.clusterState().nodes.filter((node) => node.id !== selfId);
    const critical = members.filter((node) => voters.has(node.id));
    const background = members.filter((node) => !voters.has(node.id));
    const quorum = () => hasJointQuorum(configuration, holders);

    if (!quorum() && this.inFlight + critical.length > this.options.pushesInFlightMax) {
      throw new ConclaveError('OVERLOADED', `${this.inFlight} blob copies to other nodes are in flight; retry shortly.`, {
        blobPushesInFlightMax: this.options.pushesInFlightMax,
      });
    }

    // Aborted at the deadline if no quorum by then (the write is refused: further copies are wasted), or at close.
    const attempt = new AbortController();
    const signal = AbortSignal.any([attempt.signal, this.closing.signal]);
    let settle: (reached: boolean) => void = () => undefined;
    const reached = new Promise<boolean>((resolve) => (settle = resolve));
    let open = 0;
    const start = (peer: NodeDescriptor, retry: boolean) => {
      open++;
      this.inFlight++;
      void this.copyTo(peer, sha256, size, signal, () => retry && !quorum())
        .then((held) => {
          if (held) holders.add(peer.id);
        })
        .finally(() => {
          this.inFlight--;
          open--;
          if (quorum()) settle(true);
          else if (open === 0) settle(false); // every copy gave up: waiting longer cannot help
        });
    };
    if (!quorum()) for (const peer of critical) start(peer, true);
    else for (const peer of critical) if (this.inFlight < this.options.pushesInFlightMax) start(peer, false);
    for (const peer of background) if (this.inFlight < this.options.pushesInFlightMax) start(peer, false);
    if (quorum()) return;

    const deadline = setTimeout(() => settle(false), this.options.pushTimeoutMs);
    const ok = await reached;
    clearTimeout(deadline);
    if (ok) return;
    attempt.abort();
    if (this.closing.signal.aborted) throw new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; the binary was not stored. Retry on another node or later.');
    const nameOf = (id: string) => members.find((n) => n.id === id)?.name ?? (id === selfId ? this.runtime.self().name : id);
    const held = [...holders].map(nameOf).sort();
    this.log.warn({ sha256, holders: held, voters: [...voters].map(nameOf).sort() }, 'an upload reached no quorum of the voting nodes in time; the write is refused');
    throw new ConclaveError(
      'BLOB_NOT_REPLICATED',
      `The binary was copied to ${held.join(', ')} within ${this.options.pushTimeoutMs} ms, not to a quorum of the voting nodes; ` +
        'nothing was stored. Retry; GET /api/v1/cluster/status shows which nodes are down.',
      { holders: held },
    );
  }

  /** Aborts every copy in flight. */
  close(): void {
    this.closing.abort();
  }

  /** One peer: ask, copy if missing; while `keepTrying()`, try again after a back-off. True once the peer holds it. */
  private async copyTo(peer: NodeDescriptor, sha256: string, size: number, signal: AbortSignal, keepTrying: () => boolean): Promise<boolean> {
    let delayMs = retryDelayMsMin;
    for (;;) {
      // Its address may have been published or changed since the last try.
      const current = this.runtime.clusterState().nodes.find((n) => n.id === peer.id) ?? peer;
      try {
        if (await this.peers.has(current, sha256, signal)) return true;
        await this.peers.push(current, sha256, size, signal);
        return true;
      } catch (err) {
        if (signal.aborted || !keepTrying()) {
          if (!signal.aborted) this.log.info({ sha256, peer: peer.name, err: String(err) }, 'could not copy a blob to a peer; it will fetch it when it applies the entry');
          return false;
        }
        this.log.debug({ sha256, peer: peer.name, err: String(err) }, 'copying a blob to a peer failed; retrying');
      }
      try {
        await sleep(delayMs, undefined, { signal });
      } catch {
        return false;
      }
      delayMs = Math.min(delayMs * 2, retryDelayMsMax);
    }
  }
}
