import type { ClusterMessage } from '../core/clusterMessages.js';

/**
 * Checks a message from a peer before the coordinator sees it. The handshake proved the peer knows the cluster
 * secret; this makes sure it speaks for itself and in the expected shape — a confused or older peer must not make
 * the core act on someone else's behalf or trip an assertion. Returns why not, or null when it is well formed.
 */
const isCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isText = (v: unknown, max = 1024) => typeof v === 'string' && v.length > 0 && v.length <= max;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Most ids one bootstrap view may carry (the coordinator bounds its own view the same way). */
const viewIdsMax = 256;
/** Most entries one append may carry (far above what any node sends). */
export const appendEntriesMax = 10_000;

function descriptorProblem(node: unknown, from: string): string | null {
  if (!isRecord(node)) return 'no node descriptor';
  if (node['id'] !== from) return 'a descriptor of another node';
  if (!isText(node['name'], 64) || !isText(node['address'], 300) || !isText(node['version'], 32)) return 'a malformed descriptor';
  if (node['httpAddress'] !== undefined && !isText(node['httpAddress'], 300)) return 'a malformed HTTP address';
  if (node['internalHttpAddress'] !== undefined && !isText(node['internalHttpAddress'], 300)) return 'a malformed internal HTTP address';
  const roles = node['roles'];
  if (!isRecord(roles) || typeof roles['masterEligible'] !== 'boolean' || typeof roles['votingOnly'] !== 'boolean') return 'malformed roles';
  return null;
}

function entryProblem(entry: unknown): string | null {
  if (!isRecord(entry) || !isCount(entry['index']) || !isCount(entry['term'])) return 'a malformed entry';
  const payload = entry['payload'];
  if (!isRecord(payload)) return 'an entry without a payload';
  switch (payload['kind']) {
    case 'noop':
    case 'command':
    case 'cluster':
      return null;
    case 'configuration': {
      const ids = (v: unknown) => Array.isArray(v) && v.length > 0 && v.length <= viewIdsMax && v.every((id) => isText(id, 256));
      return ids(payload['current']) && (payload['next'] === undefined || ids(payload['next'])) ? null : 'a malformed configuration';
    }
    default:
      return 'an entry of an unknown kind';
  }
}

/** One check per message type: the compiler refuses a message type without one (a type the core sends and this
 * dropped as unknown once made every linearizable read on a replica time out). */
const checks: { readonly [K in ClusterMessage['type']]: (m: Record<string, unknown>, from: string) => string | null } = {
  preVoteRequest: votingRequestProblem,
  voteRequest: votingRequestProblem,
  preVoteResponse: votingResponseProblem,
  voteResponse: votingResponseProblem,
  appendRequest: (m) => {
    if (!isCount(m['term']) || !isCount(m['prevIndex']) || !isCount(m['prevTerm']) || !isCount(m['commitIndex'])) return 'malformed numbers';
    if (!isCount(m['seq']) || !isCount(m['sentTick'])) return 'malformed sequence or tick';
    const lease = m['lease'];
    if (lease !== undefined && (!isRecord(lease) || !isCount(lease['epoch']) || !isCount(lease['anchorTick']) || !isCount(lease['ticks']))) return 'a malformed lease';
    const entries = m['entries'];
    if (!Array.isArray(entries) || entries.length > appendEntriesMax) return 'malformed entries';
    const prevIndex = m['prevIndex'] as number;
    for (let i = 0; i < entries.length; i++) {
      const problem = entryProblem(entries[i]);
      if (problem !== null) return problem;
      if ((entries[i] as { index: number }).index !== prevIndex + i + 1) return 'entries out of sequence';
    }
    return null;
  },
  appendResponse: (m) =>
    isCount(m['term']) && typeof m['success'] === 'boolean' && isCount(m['matchIndex']) && isCount(m['lastIndex']) && isCount(m['appliedIndex']) &&
    isCount(m['echoSeq']) && isCount(m['echoSentTick']) && isCount(m['recvTick']) && isCount(m['epoch'])
      ? null
      : 'malformed fields',
  snapshotRequest: (m, from) => {
    if (!isCount(m['term'])) return 'malformed numbers';
    if (m['sender'] !== undefined) {
      const problem = descriptorProblem(m['sender'], from);
      if (problem !== null) return problem;
    }
    return snapshotProblem(m['snapshot']);
  },
  readIndexRequest: (m) => (isCount(m['term']) && isText(m['id'], 256) ? null : 'malformed fields'),
  readIndexResponse: (m) => (isCount(m['term']) && isText(m['id'], 256) && (m['index'] === null || isCount(m['index'])) ? null : 'malformed fields'),
  probeRequest: discoveryProblem,
  probeResponse: discoveryProblem,
  joinRequest: (m, from) => {
    const problem = descriptorProblem(m['node'], from);
    if (problem !== null) return problem;
    const uuid = m['clusterUuid'];
    return isText(m['clusterName'], 64) && (uuid === null || isText(uuid, 64)) ? null : 'malformed cluster identity';
  },
  joinResponse: (m) => {
    const master = m['master'];
    return isText(m['outcome'], 64) && (master === null || isText(master, 256)) ? null : 'malformed fields';
  },
};

function votingRequestProblem(m: Record<string, unknown>): string | null {
  return isCount(m['term']) && isCount(m['lastIndex']) && isCount(m['lastTerm']) ? null : 'malformed numbers';
}

function votingResponseProblem(m: Record<string, unknown>): string | null {
  return isCount(m['term']) && typeof m['granted'] === 'boolean' ? null : 'malformed fields';
}

function discoveryProblem(m: Record<string, unknown>, from: string): string | null {
  const info = m['info'];
  if (!isRecord(info)) return 'no discovery info';
  const problem = descriptorProblem(info['node'], from);
  if (problem !== null) return problem;
  const view = info['unformedEligible'];
  if (!Array.isArray(view) || view.length > viewIdsMax || !view.every((id) => isText(id, 256))) return 'a malformed bootstrap view';
  const uuid = info['clusterUuid'];
  const master = info['master'];
  return isText(info['clusterName'], 64) && (uuid === null || isText(uuid, 64)) && (master === null || isText(master, 256)) && typeof info['hasJournal'] === 'boolean' && isCount(info['term'])
    ? null
    : 'malformed discovery info';
}

/**
 * A snapshot names its file (src/storage/snapshotFile.ts: SnapshotFileRef) and carries the cluster state at its
 * index, which the coordinator adopts whole: both must have the shape a node of this version writes.
 */
function snapshotProblem(snapshot: unknown): string | null {
  if (!isRecord(snapshot) || !isCount(snapshot['index']) || !isCount(snapshot['term']) || (snapshot['index'] as number) === 0) return 'a malformed snapshot';
  const configuration = snapshot['configuration'];
  if (!isRecord(configuration) || entryProblem({ index: 0, term: 0, payload: configuration }) !== null || configuration['kind'] !== 'configuration') {
    return 'a snapshot with a malformed configuration';
  }
  const data = snapshot['data'];
  if (!isRecord(data)) return 'a snapshot without data';
  const file = data['stateMachine'];
  if (
    !isRecord(file) ||
    file['index'] !== snapshot['index'] ||
    file['term'] !== snapshot['term'] ||
    !isCount(file['bytes']) ||
    typeof file['sha256'] !== 'string' ||
    !/^[0-9a-f]{64}$/.test(file['sha256']) ||
    !isText(file['holder'], 256)
  ) {
    return 'a snapshot that names no valid file';
  }
  const state = data['clusterState'];
  if (!isRecord(state) || !isCount(state['version']) || !Array.isArray(state['nodes']) || !Array.isArray(state['inSync']) || !Array.isArray(state['votingExclusions'])) {
    return 'a snapshot with a malformed cluster state';
  }
  for (const node of state['nodes'] as unknown[]) {
    if (descriptorProblem(node, isRecord(node) ? (node['id'] as string) : '') !== null) return 'a snapshot with a malformed member';
  }
  const voting = state['votingConfiguration'];
  if (!isRecord(voting) || !Array.isArray(voting['current']) || !isRecord(state['settings'])) return 'a snapshot with a malformed cluster state';
  return null;
}

export function messageProblem(message: unknown, from: string, self: string): string | null {
  if (!isRecord(message)) return 'not an object';
  if (message['from'] !== from) return 'it names another sender';
  if (message['to'] !== self) return 'it is addressed to another node';
  const type = message['type'];
  if (typeof type !== 'string' || !Object.hasOwn(checks, type)) return 'an unknown message type';
  return checks[type as ClusterMessage['type']](message, from);
}
