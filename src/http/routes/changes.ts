import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { FeedFilter } from '../../changes/changeFeed.js';
import { changeOps, parseFeedPosition, formatFeedPosition, type ChangeOp, type FeedPosition } from '../../content/changes.js';
import { parsePath } from '../../content/paths.js';
import { parseLimit, single } from '../../content/query.js';
import { parseNodeType } from '../../content/validate.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { FeedStream } from '../feedStream.js';
import { waiterOf } from '../minIndex.js';
import { header } from '../representation.js';
import { liveNodeReadFilter, readerKeyOf, viewerOf } from '../readAccess.js';

type ChangesRequest = FastifyRequest<{ Querystring: Record<string, string | string[]> }>;

/** Filters take a comma-separated list, or the parameter repeated; at most this many values each. */
const filterValuesMax = 64;

/** A parameter that may be absent but not repeated. */
function optional(raw: string | string[] | undefined, name: string): string | undefined {
  return raw === undefined ? undefined : single(raw, name);
}

function listOf(raw: string | string[] | undefined, name: string): string[] | undefined {
  if (raw === undefined) return undefined;
  const values = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => v.split(',')).map((v) => v.trim());
  if (values.length > filterValuesMax || values.some((v) => v === '')) {
    throw new ConclaveError('INVALID_REQUEST', `"${name}" takes 1 to ${filterValuesMax} comma-separated values, none empty.`, { parameter: name });
  }
  return values;
}

export function parseFeedFilter(query: Record<string, string | string[]>): FeedFilter {
  const under = optional(query['under'], 'under');
  const types = listOf(query['type'], 'type');
  const ops = listOf(query['op'], 'op');
  for (const op of ops ?? []) {
    if (!(changeOps as readonly string[]).includes(op)) {
      throw new ConclaveError('INVALID_REQUEST', `"op" takes ${changeOps.join(', ')}; not ${JSON.stringify(op.slice(0, 40))}.`, { parameter: 'op' });
    }
  }
  return {
    ...(under !== undefined ? { under: parsePath(under, 'under') } : {}),
    ...(types !== undefined ? { types: new Set(types.map((t) => parseNodeType(t))) } : {}),
    ...(ops !== undefined ? { ops: new Set(ops as ChangeOp[]) } : {}),
  };
}

function parseWaitSeconds(raw: string | string[] | undefined, max: number): number {
  const text = optional(raw, 'wait');
  if (text === undefined) return 0;
  const seconds = Number(text);
  if (!/^\d{1,6}$/.test(text) || seconds > max) {
    throw new ConclaveError('INVALID_REQUEST', `"wait" must be a whole number of seconds from 0 to ${max} (changes.waitSecondsMax).`, { parameter: 'wait', waitSecondsMax: max });
  }
  return seconds;
}

/**
 * The change feed:
 *   GET /api/v1/changes?since=&limit=&wait=&under=&type=&op=          a page of events as JSON, with `next`
 *   GET /api/v1/changes?since=&under=&type=&op=  (Accept: text/event-stream)   Server-Sent Events, live
 *
 * A read like any other: the consistency gate has admitted it (src/http/app.ts), so it reflects every write
 * acknowledged before it began. Positions and events: src/content/changes.ts.
 */
export async function changesRoutes(app: FastifyInstance): Promise<void> {
  const context = app.conclave;
  const { config, changes, runtime, repository } = context;
  const limits = config.changes;
  const streams = new Set<FeedStream>();
  const longPolls = new Set<AbortController>();
  const slotsOf = new Map<string, number>();
  let slotsTaken = 0;

  /**
   * One of changes.subscribersMax slots (changes.subscribersPerUserMax per user, or per source address for anonymous
   * callers), for a stream's life or a long-poll's wait; refused at once beyond.
   */
  const takeSlot = (request: FastifyRequest): (() => void) => {
    const who = waiterOf(request);
    const mine = slotsOf.get(who) ?? 0;
    if (slotsTaken >= limits.subscribersMax || mine >= limits.subscribersPerUserMax) {
      const perUser = mine >= limits.subscribersPerUserMax;
      throw new ConclaveError(
        'OVERLOADED',
        perUser
          ? `You already hold ${mine} change streams and long-polls on this node (changes.subscribersPerUserMax); close one first.`
          : `This node already serves ${limits.subscribersMax} change streams and long-polls (changes.subscribersMax); retry shortly or on another node.`,
        perUser ? { subscribersPerUserMax: limits.subscribersPerUserMax } : { subscribersMax: limits.subscribersMax },
      );
    }
    slotsTaken++;
    slotsOf.set(who, mine + 1);
    context.metrics?.feed.subscribers.inc();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      slotsTaken--;
      context.metrics?.feed.subscribers.dec();
      const left = slotsOf.get(who)! - 1;
      if (left === 0) slotsOf.delete(who);
      else slotsOf.set(who, left);
    };
  };

  /** A client that went while the request waited (credentials, consistency, a position ahead) is not served. */
  const stillThere = (request: FastifyRequest, reply: FastifyReply) => {
    if (request.raw.destroyed || reply.raw.destroyed || request.raw.socket.destroyed) {
      throw new ConclaveError('INVALID_REQUEST', 'The client closed the connection before the feed answered.');
    }
    if (context.closing) throw new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; retry on another node or later.');
  };

  /**
   * A position this node has not applied yet (a client that read further on another node) is waited for as
   * X-Conclave-Min-Index is, in the caller's share of those waits; one beyond anything the cluster wrote is refused.
   */
  const reach = (request: FastifyRequest, since: FeedPosition) => app.minIndexGate.reach(request, since.index, 'since');

  // A node stopping ends its streams with a final event (the client resumes elsewhere) and answers its long-polls
  // with what they have: nothing holds the stop up.
  app.addHook('preClose', async () => {
    for (const stream of streams) stream.end('SHUTTING_DOWN', 'The node is shutting down; resume on another node from the position named.');
    for (const poll of longPolls) poll.abort();
  });

  app.get(
    '/api/v1/changes',
    { config: { permission: 'read', query: ['since', 'limit', 'wait', 'under', 'type', 'op'] } },
    async (request: ChangesRequest, reply: FastifyReply) => {
      const viewer = viewerOf(request);
      const visible = liveNodeReadFilter(repository.content, viewer);
      // Events are filtered by the reader's access at delivery (src/http/readAccess.ts): a node it may not read
      // then leaves no event in its pages or its stream.
      const filter = visible === null ? parseFeedFilter(request.query) : { ...parseFeedFilter(request.query), visible, readerKey: readerKeyOf(viewer) };
      const sinceText = optional(request.query['since'], 'since');
      const wantsStream = (header(request.headers, 'accept') ?? '').includes('text/event-stream');
      if (wantsStream) {
        if (request.query['limit'] !== undefined || request.query['wait'] !== undefined) {
          throw new ConclaveError('INVALID_REQUEST', '"limit" and "wait" are for pages; an event stream (Accept: text/event-stream) sends every event as it comes.');
        }
        // EventSource sends Last-Event-ID when it reconnects: it wins over the since of the URL it reconnects to.
        const lastEventId = header(request.headers, 'last-event-id');
        const since = lastEventId !== undefined && lastEventId !== '' ? parseFeedPosition(lastEventId, 'Last-Event-ID') : sinceOrNow(sinceText, runtime.appliedIndex);
        const release = takeSlot(request);
        try {
          await reach(request, since);
          stillThere(request, reply);
          changes.checkAvailable(since);
        } catch (err) {
          release();
          throw err;
        }
        const stream = new FeedStream(changes, reply, since, filter, limits, request.log, runtime.appliedIndex, context.metrics?.feed ?? null);
        streams.add(stream);
        void stream.run().finally(() => {
          streams.delete(stream);
          release();
        });
        return reply;
      }
      const since = sinceText === undefined ? { index: changes.oldestPosition, ordinal: null } : sinceOrNow(sinceText, runtime.appliedIndex);
      const limit = parseLimit(request.query['limit'], limits.pageSizeDefault, limits.pageSizeMax);
      const waitSeconds = parseWaitSeconds(request.query['wait'], limits.waitSecondsMax);
      const bytesMax = config.content.pageBytesMax;
      let page;
      if (waitSeconds === 0) {
        await reach(request, since);
        page = changes.page(since, filter, limit, bytesMax);
      } else {
        const release = takeSlot(request);
        const gone = new AbortController();
        const onClose = () => gone.abort();
        reply.raw.once('close', onClose);
        longPolls.add(gone);
        try {
          await reach(request, since);
          stillThere(request, reply);
          const deadline = Date.now() + waitSeconds * 1000;
          page = changes.page(since, filter, limit, bytesMax);
          // Nothing yet and nothing left to read: wait for the next applied entry and read again (a filter may skip
          // what it brings). A page cut short by the scan bound answers at once, empty, with `next`: waiting here
          // would read the rest of the table in one go.
          while (page.items.length === 0 && !page.more && !gone.signal.aborted) {
            const left = deadline - Date.now();
            if (left <= 0 || !(await changes.waitForEntryAfter(page.next.index, left, gone.signal))) break;
            page = changes.page(page.next, filter, limit, bytesMax);
          }
        } finally {
          reply.raw.off('close', onClose);
          longPolls.delete(gone);
          release();
        }
      }
      context.metrics?.feed.eventsSent.inc(page.items.length);
      // The events' JSON is made once per event however many readers get it (changeFeed.ts): sent as it is.
      const body = `{"events":[${page.items.map((item) => item.json).join(',')}],"next":${JSON.stringify(formatFeedPosition(page.next))},"oldest":${changes.oldestPosition}}`;
      return reply.type('application/json; charset=utf-8').send(body);
    },
  );
}

/** `since=now`: from the applied index at this moment (what the gate admitted: every acknowledged write is in it). */
function sinceOrNow(text: string | undefined, appliedIndex: number): FeedPosition {
  if (text === undefined || text === 'now') return { index: appliedIndex, ordinal: null };
  return parseFeedPosition(text, 'since');
}
