import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

import { feedFilterOf, parseWebhookRequest } from '../../webhooks/webhookRegistration.js';
import { generateWebhookSecret, sealWebhookSecret } from '../../webhooks/webhookSecret.js';
import { formatFeedPosition, type FeedPosition } from '../../content/changes.js';
import type { Webhook } from '../../core/clusterWebhooks.js';
import { everyMemberAtLeast } from '../../core/clusterState.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { awaitClusterState } from '../clusterStateWait.js';

/**
 *   POST   /api/v1/webhooks        (admin) {url, secret?, under?, type?, op?, since?} → 201, the secret shown once
 *   GET    /api/v1/webhooks        (admin) every webhook (never a secret)
 *   GET    /api/v1/webhooks/{id}   (admin) one, with its backlog
 *   DELETE /api/v1/webhooks/{id}   (admin)
 *
 * Webhooks are cluster-state changes made by the master (a replica forwards the POST and DELETE); a GET answers
 * from this node's cluster state: the committed mark, which the master's delivery may have passed by up to
 * webhooks.markCommitIntervalMs.
 */
/** The first release that applies webhook changes to the cluster state. */
export const webhooksSinceVersion = '0.2.0';

export async function webhookRoutes(app: FastifyInstance): Promise<void> {
  const { runtime, config, changes, clusterSecret, repository } = app.conclave;
  const settings = config.webhooks;

  const find = (id: string): Webhook => {
    // Own keys only: an id such as "constructor" or "__proto__" names no webhook.
    const webhooks = runtime.clusterState().webhooks;
    const hook = Object.hasOwn(webhooks, id) ? webhooks[id] : undefined;
    if (hook === undefined) throw new ConclaveError('WEBHOOK_NOT_FOUND', `No webhook ${id.slice(0, 64)} is registered; GET /api/v1/webhooks lists them.`, { id: id.slice(0, 64) });
    return hook;
  };

  app.post('/api/v1/webhooks', { config: { permission: 'admin' } }, async (request, reply) => {
    const state = runtime.clusterState();
    // A member of an older release could not apply a webhook's cluster-state changes: none before all run this one.
    if (!everyMemberAtLeast(state, webhooksSinceVersion)) {
      throw new ConclaveError('UPGRADE_IN_PROGRESS', `Webhooks need every member to run ${webhooksSinceVersion} or newer; finish the rolling upgrade first.`, {
        needs: webhooksSinceVersion,
        members: state.nodes.map((n) => ({ name: n.name, version: n.version })),
      });
    }
    if (Object.keys(state.webhooks).length >= settings.max) {
      throw new ConclaveError('WEBHOOKS_FULL', `The cluster holds ${settings.max} webhooks already (webhooks.max); delete one first.`, { max: settings.max });
    }
    const asked = parseWebhookRequest(request.body, settings.hostsAllowed);
    // Every write acknowledged before this request is applied on the master that serves it: "from now" misses none.
    const applied = runtime.appliedIndex;
    const since: FeedPosition = asked.since ?? { index: applied, ordinal: null };
    if (since.index > applied) {
      throw new ConclaveError('INVALID_REQUEST', `"since" ${formatFeedPosition(since)} is beyond the feed's end (index ${applied}).`, { parameter: 'since', appliedIndex: applied });
    }
    changes.checkAvailable(since);
    const id = randomUUID();
    const secret = asked.secret ?? generateWebhookSecret();
    const webhook: Webhook = {
      id,
      url: asked.url,
      filter: asked.filter,
      sealedSecret: sealWebhookSecret(secret, clusterSecret, id),
      createdAt: new Date().toISOString(),
      createdBy: request.principal.name,
      mark: since,
      state: 'active',
      failuresInARow: 0,
    };
    runtime.proposeClusterChange({ type: 'webhookRegistered', webhook });
    await awaitClusterState(runtime, (s) => s.webhooks[id] !== undefined, config.cluster.writeTimeoutMs, 'GET /api/v1/webhooks');
    // The origin only: a URL's path or query often carries the receiver's own token.
    request.log.info({ webhook: id, origin: new URL(webhook.url).origin }, 'webhook registered');
    return reply.code(201).send({ ...view(runtime.clusterState().webhooks[id]!), secret });
  });

  app.get('/api/v1/webhooks', { config: { permission: 'admin' } }, async () => ({ webhooks: Object.values(runtime.clusterState().webhooks).map(view) }));

  app.get<{ Params: { id: string } }>('/api/v1/webhooks/:id', { config: { permission: 'admin' } }, async (request) => {
    const hook = find(request.params.id);
    // The matching events pending, counted over at most changes.scanEventsMax of them (a page's own bound).
    let backlog: { events: number; matching: number; matchingExact: boolean } | null = null;
    if (hook.state === 'active') {
      const events = repository.content.changes.countAfter(hook.mark);
      let matching = 0;
      let exact = true;
      try {
        const page = changes.page(hook.mark, feedFilterOf(hook.filter), config.changes.scanEventsMax);
        matching = page.items.length;
        exact = !page.more;
      } catch {
        exact = false;
      }
      backlog = { events, matching, matchingExact: exact };
    }
    return { ...view(hook), backlog };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/webhooks/:id', { config: { permission: 'admin' } }, async (request, reply) => {
    const id = find(request.params.id).id;
    runtime.proposeClusterChange({ type: 'webhookRemoved', id });
    await awaitClusterState(runtime, (s) => s.webhooks[id] === undefined, config.cluster.writeTimeoutMs, 'GET /api/v1/webhooks');
    request.log.info({ webhook: id }, 'webhook removed');
    return reply.code(204).send();
  });
}

/** A webhook as the API shows it: never its secret, sealed or not. */
function view(hook: Webhook): Record<string, unknown> {
  return {
    id: hook.id,
    url: hook.url,
    ...(hook.filter.under !== undefined ? { under: hook.filter.under } : {}),
    ...(hook.filter.types !== undefined ? { type: hook.filter.types } : {}),
    ...(hook.filter.ops !== undefined ? { op: hook.filter.ops } : {}),
    createdAt: hook.createdAt,
    createdBy: hook.createdBy,
    mark: formatFeedPosition(hook.mark),
    state: hook.state,
    ...(hook.broken !== undefined ? { broken: hook.broken } : {}),
    failuresInARow: hook.failuresInARow,
    lastError: hook.lastError ?? null,
  };
}
