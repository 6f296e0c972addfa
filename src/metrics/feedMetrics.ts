import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * Metrics of the change feed and of webhook delivery, for the code that serves them to update:
 *
 *   feed.subscribers.inc() / .dec()        a stream or long poll starts / ends on this node
 *   feed.eventsSent.inc(n)                 n events sent to subscribers (pages, long polls and streams alike)
 *   feed.subscribersCut.inc()              a slow subscriber was cut off (its buffer limit was passed)
 *   feed.webhookDeliveries.inc()           a webhook POST was answered 2xx (each retry that succeeds counts once)
 *   feed.webhookFailures.inc()             a webhook POST failed (error status, timeout, refused connection)
 *   feed.setWebhookBacklog(() => events)   what the backlog gauge reads at each scrape: events matching a webhook
 *                                          and not delivered yet, summed over webhooks (0 where delivery does not run)
 *
 * No label carries a webhook id or URL: their number is the operators' choice, and GET /api/v1/webhooks/{id}
 * shows each one's backlog and last error.
 */
export class FeedMetrics {
  readonly subscribers: Gauge;
  readonly eventsSent: Counter;
  readonly subscribersCut: Counter;
  readonly webhookDeliveries: Counter;
  readonly webhookFailures: Counter;
  private backlog: () => number = () => 0;

  constructor(registry: Registry) {
    const registers = [registry];
    this.subscribers = new Gauge({
      name: 'conclave_change_feed_subscribers',
      help: 'Change-feed subscribers (event streams and long polls) connected to this node now.',
      registers,
    });
    this.eventsSent = new Counter({
      name: 'conclave_change_feed_events_sent_total',
      help: 'Change-feed events this node sent to subscribers.',
      registers,
    });
    this.subscribersCut = new Counter({
      name: 'conclave_change_feed_subscribers_cut_total',
      help: 'Subscribers this node cut off because they fell too far behind.',
      registers,
    });
    this.webhookDeliveries = new Counter({
      name: 'conclave_webhook_deliveries_total',
      help: 'Webhook deliveries this node made that the receiver accepted (2xx).',
      registers,
    });
    this.webhookFailures = new Counter({
      name: 'conclave_webhook_delivery_failures_total',
      help: 'Webhook delivery attempts that failed (an error status, a timeout, no connection); each is retried.',
      registers,
    });
    const backlog = () => this.backlog();
    new Gauge({
      name: 'conclave_webhook_backlog_events',
      help: 'Events matching a webhook that are not delivered yet, summed over webhooks (on the node that delivers: the master).',
      registers,
      collect() {
        this.set(backlog());
      },
    });
  }

  /** Sets what the backlog gauge reads at each scrape. */
  setWebhookBacklog(read: () => number): void {
    this.backlog = read;
  }
}
