import type { FeedFilter } from '../changes/changeFeed.js';
import { parseFeedPosition, type ChangeOp, type FeedPosition } from '../content/changes.js';
import { isPlainObject } from '../content/mergePatch.js';
import type { WebhookFilter } from '../core/clusterWebhooks.js';
import { ConclaveError } from '../errors/catalogue.js';
import { parseFeedFilter } from '../http/routes/changes.js';
import { checkWebhookSecret } from './webhookSecret.js';
import { parseWebhookUrl } from './webhookUrl.js';

/** What `POST /api/v1/webhooks` asks for, checked (not yet placed against the feed: that is the route's). */
export interface WebhookRequest {
  readonly url: string;
  /** Null: generate one. */
  readonly secret: string | null;
  readonly filter: WebhookFilter;
  /** Null: the feed's applied index at registration. */
  readonly since: FeedPosition | null;
}

const fields = new Set(['url', 'secret', 'under', 'type', 'op', 'since']);

/**
 * `{url, secret?, under?, type?, op?, since?}`: filters as the feed takes them (`type` and `op` a comma-separated
 * string or a list of strings; the feed's own parser checks them), `since` a feed position ("N" or "N:k") or index.
 */
export function parseWebhookRequest(body: unknown, hostsAllowed: readonly string[]): WebhookRequest {
  if (!isPlainObject(body)) throw new ConclaveError('INVALID_REQUEST', 'Send {"url": "https://...", "secret"?, "under"?, "type"?, "op"?, "since"?}.');
  const unknown = Object.keys(body).find((key) => !fields.has(key));
  if (unknown !== undefined) throw new ConclaveError('INVALID_REQUEST', `A webhook takes url, secret, under, type, op and since; not ${JSON.stringify(unknown.slice(0, 40))}.`, { parameter: unknown.slice(0, 40) });
  const url = parseWebhookUrl(body['url'], hostsAllowed).href;
  const secret = body['secret'] === undefined ? null : checkWebhookSecret(body['secret']);
  const query: Record<string, string | string[]> = {};
  for (const key of ['under', 'type', 'op'] as const) {
    const value = body[key];
    if (value === undefined) continue;
    const ok = typeof value === 'string' || (key !== 'under' && Array.isArray(value) && value.every((v) => typeof v === 'string'));
    if (!ok) throw new ConclaveError('INVALID_REQUEST', key === 'under' ? '"under" must be a path.' : `"${key}" must be a string (comma-separated values) or a list of strings.`, { parameter: key });
    query[key] = value as string | string[];
  }
  const filter = storedFilter(parseFeedFilter(query));
  const rawSince = body['since'];
  let since: FeedPosition | null = null;
  if (rawSince !== undefined) {
    if (typeof rawSince === 'number' && Number.isSafeInteger(rawSince) && rawSince >= 0) since = { index: rawSince, ordinal: null };
    else if (typeof rawSince === 'string') since = parseFeedPosition(rawSince, 'since');
    else throw new ConclaveError('INVALID_REQUEST', '"since" must be a feed position: an index, or "N" / "N:k" as the feed\'s ids.', { parameter: 'since' });
  }
  return { url, secret, filter, since };
}

/** A feed filter as the cluster state keeps it: plain, lists sorted. */
export function storedFilter(filter: FeedFilter): WebhookFilter {
  return {
    ...(filter.under !== undefined ? { under: filter.under } : {}),
    ...(filter.types !== undefined ? { types: [...filter.types].sort() } : {}),
    ...(filter.ops !== undefined ? { ops: [...filter.ops].sort() } : {}),
  };
}

export function feedFilterOf(filter: WebhookFilter): FeedFilter {
  return {
    ...(filter.under !== undefined ? { under: filter.under } : {}),
    ...(filter.types !== undefined ? { types: new Set(filter.types) } : {}),
    ...(filter.ops !== undefined ? { ops: new Set(filter.ops as ChangeOp[]) } : {}),
  };
}
