import type { JoinRefusal, NodeDescriptor } from './clusterState.js';
import type { Message } from './types.js';

/**
 * Messages of the cluster layer above the journal: discovery probes (who is out there, which cluster, which
 * master) and join requests (validated by the master, committed as a cluster-state change).
 */

/** What a node tells those who probe it. */
export interface DiscoveryInfo {
  readonly node: NodeDescriptor;
  readonly clusterName: string;
  /** The cluster it belongs to, from its applied cluster state; null before the first master named it. */
  readonly clusterUuid: string | null;
  /** It has a journal: it bootstrapped or joined a cluster, so it must never bootstrap again. */
  readonly hasJournal: boolean;
  /** The master it currently follows (or is), if any. */
  readonly master: string | null;
  readonly term: number;
  /**
   * For bootstrap by "expect N": the master-eligible nodes without a journal it has discovered, itself included,
   * sorted. Nodes bootstrap only when every one of them reports exactly the same set.
   */
  readonly unformedEligible: readonly string[];
}

export interface ProbeRequest {
  readonly type: 'probeRequest';
  readonly from: string;
  readonly to: string;
  readonly info: DiscoveryInfo;
}

export interface ProbeResponse {
  readonly type: 'probeResponse';
  readonly from: string;
  readonly to: string;
  readonly info: DiscoveryInfo;
}

export interface JoinRequest {
  readonly type: 'joinRequest';
  readonly from: string;
  readonly to: string;
  readonly node: NodeDescriptor;
  readonly clusterName: string;
  readonly clusterUuid: string | null;
}

/** Why a join did not go ahead: the validation refusals, and the reasons to try again (elsewhere, or later). */
export type JoinOutcome = JoinRefusal | 'notMaster' | 'notFormed' | 'busy' | 'accepted';

export interface JoinResponse {
  readonly type: 'joinResponse';
  readonly from: string;
  readonly to: string;
  readonly outcome: JoinOutcome;
  /** On 'notMaster': the master the responder knows of. */
  readonly master: string | null;
}

export type ClusterMessage = Message | ProbeRequest | ProbeResponse | JoinRequest | JoinResponse;

export function isCoreMessage(message: ClusterMessage): message is Message {
  return !(message.type === 'probeRequest' || message.type === 'probeResponse' || message.type === 'joinRequest' || message.type === 'joinResponse');
}
