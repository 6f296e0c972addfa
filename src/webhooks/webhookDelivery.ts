import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';

import { eventJson, type ChangeFeed } from '../changes/changeFeed.js';
import { formatFeedPosition, positionOf, type FeedPosition } from '../content/changes.js';
import type { JsonValue } from '../core/clusterJobs.js';
import type { ClusterChange, ClusterState } from '../core/clusterState.js';
import { markAfter, webhookTextCharsMax, type Webhook, type WebhookFailure } from '../core/clusterWebhooks.js';
import { isConclaveError } from '../errors/catalogue.js';
import type { FeedMetrics } from '../metrics/feedMetrics.js';
import type { JobKind, JobRun } from '../jobs/clusterJobs.js';
import { postWebhook } from './webhookPoster.js';
import { feedFilterOf } from './webhookRegistration.js';
import { signatureHeader, unsealWebhookSecret } from './webhookSecret.js';
import { hostAllowed, parseWebhookUrl } from './webhookUrl.js';

/**
 * Webhook delivery, a cluster-exclusive job (src/jobs/clusterJobs.ts): the master alone posts the feed's events to
 * every active webhook, each webhook on its own (one that fails waits out its own back-off and holds no other back),
 * in feed order, at least once. A delivery is a POST of `{"webhook": id, "events": [...]}` — up to
 * webhooks.batchEventsMax matching events, in order, as the feed's pages carry them — signed (webhookSecret.ts); a
 * 2xx answer delivers them, anything else is retried with the same events after a capped exponential back-off.
 *
 * What has been delivered (the mark: a feed position, past non-matching events too, so that an idle webhook holds
 * no history back) is committed through the journal every webhooks.markCommitIntervalMs as one `webhookMarks`
 * cluster change, with the failures. A new master resumes every webhook from its committed mark: a receiver may see
 * again what was delivered after the last commit, never miss an event. The job commits no progress of its own.
 */
export const webhookJobName = 'webhooks.delivery';

export interface WebhookDeliverySettings {
  readonly hostsAllowed: readonly string[];
  readonly privateAddressesAllowed: boolean;
  readonly deliveryTimeoutMs: number;
  readonly batchEventsMax: number;
  readonly responseBytesMax: number;
  readonly retryDelayMsMin: number;
  readonly retryDelayMsMax: number;
  readonly markCommitIntervalMs: number;
}

export interface WebhookDeliveryOptions {
  readonly feed: ChangeFeed;
  /** The index of the newest entry that recorded an event (ChangeLog.lastIndex). */
  readonly lastEventIndex: () => number;
  readonly runtime: { proposeClusterChange(change: ClusterChange): void };
  readonly clusterSecret: string;
  readonly settings: WebhookDeliverySettings;
  /** Counts deliveries and failed attempts (null: a node without metrics, in tests). */
  readonly metrics?: FeedMetrics | null;
  readonly log: Logger;
}

/** The wait between two attempts after `failuresInARow` failures. */
export function retryDelayMs(failuresInARow: number, settings: Pick<WebhookDeliverySettings, 'retryDelayMsMin' | 'retryDelayMsMax'>): number {
  return Math.min(settings.retryDelayMsMax, settings.retryDelayMsMin * 2 ** Math.max(0, Math.min(failuresInARow - 1, 30)));
}

/** How long an idle webhook waits for the next applied entry before it looks again (its stop comes by its signal). */
const idleWaitMs = 5000;

export class WebhookDelivery implements JobKind {
  readonly name = webhookJobName;

  constructor(private readonly options: WebhookDeliveryOptions) {}

  due(input: { readonly progress: JsonValue; readonly state: ClusterState; readonly now: number }): boolean {
    return Object.values(input.state.webhooks).some((hook) => hook.state === 'active');
  }

  async run(run: JobRun): Promise<void> {
    const workers = new Map<string, HookWorker>();
    const sync = () => {
      const hooks = run.clusterState().webhooks;
      for (const [id, worker] of workers) {
        if (hooks[id]?.state !== 'active' || worker.finished) {
          worker.stop();
          workers.delete(id);
        }
      }
      for (const hook of Object.values(hooks)) {
        if (hook.state !== 'active' || workers.has(hook.id)) continue;
        workers.set(hook.id, new HookWorker(hook, this.options, run));
      }
    };
    try {
      for (;;) {
        sync();
        if (workers.size === 0 || run.signal.aborted) return;
        await sleep(this.options.settings.markCommitIntervalMs, run.signal);
        if (run.signal.aborted) return;
        this.commitMarks(run.clusterState(), [...workers.values()]);
      }
    } finally {
      for (const worker of workers.values()) worker.stop();
    }
  }

  /** One webhookMarks change with what moved since the state's record (proposed again until it is applied). */
  private commitMarks(state: ClusterState, workers: readonly HookWorker[]): void {
    const marks = workers.flatMap((worker) => {
      const hook = state.webhooks[worker.id];
      if (hook === undefined || hook.state !== 'active') return [];
      const moved = markAfter(worker.mark, hook.mark);
      const failed = worker.failuresInARow !== hook.failuresInARow || (worker.lastError !== undefined && worker.lastError.at !== hook.lastError?.at);
      if (!moved && !failed) return [];
      return [{ id: worker.id, mark: worker.mark, failuresInARow: worker.failuresInARow, ...(worker.lastError !== undefined ? { lastError: worker.lastError } : {}) }];
    });
    if (marks.length === 0) return;
    try {
      this.options.runtime.proposeClusterChange({ type: 'webhookMarks', marks });
    } catch (err) {
      // Not master any more (the run stops), or the cluster-state queue is full: the next round proposes again.
      this.options.log.info({ err, webhooks: marks.length }, 'the delivered marks of webhooks were not committed this round');
    }
  }
}

/** Delivers one webhook until stopped; its mark is where it has delivered through (not yet necessarily committed). */
class HookWorker {
  readonly id: string;
  mark: FeedPosition;
  failuresInARow: number;
  lastError: WebhookFailure | undefined;
  finished = false;
  private readonly abort = new AbortController();
  private readonly log: Logger;

  constructor(
    private readonly hook: Webhook,
    private readonly options: WebhookDeliveryOptions,
    private readonly run: JobRun,
  ) {
    this.id = hook.id;
    this.mark = hook.mark;
    this.failuresInARow = hook.failuresInARow;
    this.lastError = hook.lastError;
    this.log = options.log.child({ webhook: hook.id });
    const onStop = () => this.abort.abort();
    run.signal.addEventListener('abort', onStop, { once: true });
    void this.deliver()
      .catch((err: unknown) => {
        if (!this.abort.signal.aborted) this.log.error({ err }, 'webhook delivery stopped on an unexpected error; it starts again at the next round');
      })
      .finally(() => {
        this.finished = true;
        run.signal.removeEventListener('abort', onStop);
      });
  }

  stop(): void {
    this.abort.abort();
  }

  private async deliver(): Promise<void> {
    const { feed, settings } = this.options;
    const signal = this.abort.signal;
    let secret: string;
    try {
      secret = unsealWebhookSecret(this.hook.sealedSecret, this.options.clusterSecret, this.hook.id);
    } catch (err) {
      return this.breakHook(err);
    }
    const filter = feedFilterOf(this.hook.filter);
    while (!signal.aborted) {
      let page;
      try {
        page = feed.page(this.mark, filter, settings.batchEventsMax);
      } catch (err) {
        if (isConclaveError(err) && err.code === 'CHANGES_COMPACTED') return this.breakHook(err);
        throw err;
      }
      if (page.items.length === 0) {
        this.advance(page.next);
        // Past page.next, not the mark: the mark stops at the last event, the applied index goes on.
        if (!page.more) await feed.waitForEntryAfter(page.next.index, idleWaitMs, signal);
        // A filter that skips a long backlog reads it a page (changes.scanEventsMax) at a time, letting the event
        // loop serve between pages: read in one go, it held the master's loop past its election timeout.
        else await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      // The header names the last event sent, as documented (page.next may lie past it, beyond events the filter skipped).
      const failure = await this.post(secret, page.items.map((item) => eventJson(item.event)), formatFeedPosition(positionOf(page.items.at(-1)!.event)), signal);
      if (signal.aborted) return;
      if (failure === null) {
        this.options.metrics?.webhookDeliveries.inc();
        this.advance(page.next);
        this.failuresInARow = 0;
        continue;
      }
      this.options.metrics?.webhookFailures.inc();
      this.failuresInARow++;
      this.lastError = failure;
      const delay = retryDelayMs(this.failuresInARow, settings);
      this.log.warn({ failuresInARow: this.failuresInARow, retryInMs: delay, error: failure.message, status: failure.status }, 'a webhook delivery failed; the same events are sent again after the back-off');
      await sleep(delay, signal);
    }
  }

  /**
   * Moves the mark to `next`, but no further than the feed's last event: a page read to the end names the applied
   * index, which every entry moves (this job's own mark commits too); a mark following it would be committed again
   * at every round, for nothing.
   */
  private advance(next: FeedPosition): void {
    const lastEvent = this.options.lastEventIndex();
    const target = next.ordinal === null && next.index > lastEvent ? { index: Math.max(lastEvent, this.mark.index), ordinal: null } : next;
    if (markAfter(target, this.mark)) this.mark = target;
  }

  /** Null when delivered, or what went wrong. */
  private async post(secret: string, events: Record<string, unknown>[], lastPosition: string, signal: AbortSignal): Promise<WebhookFailure | null> {
    const { settings } = this.options;
    const at = new Date(this.run.now()).toISOString();
    let url: URL;
    try {
      // webhooks.hostsAllowed is this node's: a master with a narrower list than the one that registered the hook
      // refuses to send (shown as the webhook's error) rather than reach a host it does not allow.
      url = parseWebhookUrl(this.hook.url, []);
      if (!hostAllowed(url, settings.hostsAllowed)) return { message: `the host ${url.hostname} is not in webhooks.hostsAllowed of the master`, at };
    } catch (err) {
      return { message: clip((err as Error).message), at };
    }
    const body = JSON.stringify({ webhook: this.id, events });
    const timestamp = Math.floor(this.run.now() / 1000);
    const headers = {
      'x-conclave-webhook-id': this.id,
      'x-conclave-event-position': lastPosition,
      'x-conclave-timestamp': String(timestamp),
      'x-conclave-signature': signatureHeader(secret, timestamp, body),
    };
    const outcome = await postWebhook(url, headers, body, { timeoutMs: settings.deliveryTimeoutMs, responseBytesMax: settings.responseBytesMax, signal, privateAddressesAllowed: settings.privateAddressesAllowed });
    if (outcome.ok) return null;
    return { message: clip(outcome.message), at, ...(outcome.status !== undefined ? { status: outcome.status } : {}) };
  }

  /** Proposes the webhook broken (code and message of `err`); the job stops delivering it once applied. */
  private breakHook(err: unknown): void {
    const code = isConclaveError(err) ? err.code : 'INTERNAL';
    const message = clip(err instanceof Error ? err.message : String(err));
    this.log.error({ code, message }, 'a webhook cannot be delivered any more: marked broken');
    try {
      this.options.runtime.proposeClusterChange({ type: 'webhookBroken', id: this.id, code, message, at: new Date(this.run.now()).toISOString() });
    } catch (proposeErr) {
      this.log.info({ err: proposeErr }, 'marking a webhook broken did not go through; tried again at the next round');
    }
  }
}

function clip(text: string): string {
  return text.slice(0, webhookTextCharsMax);
}

/** Resolves after `ms`, or at once when `signal` aborts (or has). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).then(
    () => undefined,
    () => undefined,
  );
}
