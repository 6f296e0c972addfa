import type { FastifyInstance } from 'fastify';

import { anonymous } from '../../auth/authenticator.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { votingExclusionsMax, type ClusterState } from '../../core/clusterState.js';
import { checkSettingsUpdate, effectiveSettings } from '../../config/dynamicSettings.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { awaitClusterState } from '../clusterStateWait.js';
import { clusterStatus } from '../../node/clusterStatus.js';
import { migrationJson } from './schemas.js';
import { contentDigest } from '../../replication/contentDigest.js';
import { readFilter, viewerOf } from '../readAccess.js';

/**
 *   GET    /api/v1/cluster/status              (read, never anonymous)  the cluster as this node sees it (clusterStatus.ts)
 *   GET    /api/v1/cluster/digest              (admin) a digest of this node's content at its applied index
 *   POST   /api/v1/cluster/voting-exclusions   (admin) {"nodes": [name or id, ...]}: leave them out of the vote
 *   DELETE /api/v1/cluster/voting-exclusions   (admin) clear every exclusion
 *   GET    /api/v1/cluster/settings            (admin) the dynamic cluster settings: those set, and every one in force
 *   PUT    /api/v1/cluster/settings            (admin) {"settings": {"name": value or null, ...}}
 *
 * Exclusions and settings are cluster-state changes made by the master: asked of another node, they are forwarded
 * to it (or answer NOT_MASTER with its address). The answer comes once the change is applied here (or after
 * cluster.writeTimeoutMs).
 */
export async function clusterRoutes(app: FastifyInstance): Promise<void> {
  const { runtime, config, repository, restoredOrigin } = app.conclave;

  // Node ids and addresses are a map of the cluster for an attacker: auth.anonymousRead publishes content, never
  // this. Any logged-in user (a monitoring account with the reader role) may read it.
  app.get('/api/v1/cluster/status', { config: { permission: 'read' } }, async (request) => {
    if (request.principal === anonymous) throw new ConclaveError('AUTH_REQUIRED', 'Log in to read the cluster status (any role will do; anonymous reading covers content only).');
    // Schema migrations running or failed (docs/http-api.md "Schemas"), as this node has applied them.
    const visible = readFilter(repository.content, viewerOf(request));
    const schemaMigrations = repository.content.schemas.pendingMigrations().map((m) => migrationJson(m, visible));
    return { ...clusterStatus(runtime, restoredOrigin?.get() ?? null), schemaMigrations };
  });

  app.get('/api/v1/cluster/digest', { config: { permission: 'admin' } }, async () => {
    // One synchronous step (SQLite reads are synchronous; entries are applied synchronously too): no entry is
    // applied while it runs, so the digest is exactly that of appliedIndex. A large repository holds the event
    // loop for as long; this is an operator's check, not a hot path.
    const appliedIndex = runtime.appliedIndex;
    const { digest, counts } = contentDigest(repository.content.nodesById(), repository.content.users(), repository.content.versions.all(), repository.content.stateDigestLines());
    // The full-text index is this node's own, derived from the content the digest covers: checked against it here.
    const searchIndex = repository.content.search.check();
    const references = repository.content.blobReferences();
    let blobsMissing = 0;
    for (const { sha256, size } of references) if (size > 0 && !(await repository.blobs.has(sha256))) blobsMissing++;
    const self = runtime.self();
    return { node: self.name, nodeId: self.id, appliedIndex, digest, counts, blobsMissing, searchIndex };
  });

  app.post('/api/v1/cluster/voting-exclusions', { config: { permission: 'admin' } }, async (request) => {
    const body = request.body;
    if (!isPlainObject(body) || !Array.isArray(body['nodes']) || body['nodes'].length === 0 || !body['nodes'].every((n) => typeof n === 'string')) {
      throw new ConclaveError('INVALID_REQUEST', 'Send {"nodes": ["name or id", ...]} with at least one node.');
    }
    const state = runtime.clusterState();
    const ids = (body['nodes'] as string[]).map((ref) => {
      const node = state.nodes.find((n) => n.id === ref || n.name === ref);
      if (node === undefined) throw new ConclaveError('INVALID_REQUEST', `No member of the cluster is called ${ref}; see GET /api/v1/cluster/status.`, { node: ref });
      return node.id;
    });
    const total = new Set([...state.votingExclusions, ...ids]).size;
    if (total > votingExclusionsMax) {
      throw new ConclaveError('INVALID_REQUEST', `At most ${votingExclusionsMax} nodes may be excluded at once; clear the exclusions first.`, { votingExclusionsMax });
    }
    runtime.proposeClusterChange({ type: 'votingExclusionsAdded', ids });
    await awaitClusterState(runtime, (s) => ids.every((id) => s.votingExclusions.includes(id)), config.cluster.writeTimeoutMs, 'GET /api/v1/cluster/status');
    return { votingExclusions: runtime.clusterState().votingExclusions };
  });

  app.delete('/api/v1/cluster/voting-exclusions', { config: { permission: 'admin' } }, async () => {
    runtime.proposeClusterChange({ type: 'votingExclusionsCleared' });
    await awaitClusterState(runtime, (s) => s.votingExclusions.length === 0, config.cluster.writeTimeoutMs, 'GET /api/v1/cluster/status');
    return { votingExclusions: [] };
  });

  const settingsView = (state: ClusterState) => ({ settings: sortedByKey(state.settings), effective: effectiveSettings(state.settings) });

  app.get('/api/v1/cluster/settings', { config: { permission: 'admin' } }, async () => settingsView(runtime.clusterState()));

  app.put('/api/v1/cluster/settings', { config: { permission: 'admin' } }, async (request) => {
    const body = request.body;
    if (!isPlainObject(body) || Object.keys(body).some((key) => key !== 'settings')) {
      throw new ConclaveError('INVALID_REQUEST', 'Send {"settings": {"name": value, ...}} (null removes a setting).');
    }
    const update = checkSettingsUpdate(body['settings']);
    runtime.proposeClusterChange({ type: 'settingsUpdated', settings: update });
    const applied = (s: ClusterState) => Object.entries(update).every(([key, value]) => (value === null ? !(key in s.settings) : s.settings[key] === value));
    await awaitClusterState(runtime, applied, config.cluster.writeTimeoutMs, 'GET /api/v1/cluster/status');
    return settingsView(runtime.clusterState());
  });
}

function sortedByKey<T>(record: Readonly<Record<string, T>>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
