/**
 * Registered webhooks in the cluster state: each names a URL, the feed filter it follows, its secret (sealed with a
 * key derived from the cluster secret: src/webhooks/webhookSecret.ts; the state only carries the sealed form), and
 * how far it has been delivered. The master delivers (src/webhooks/webhookDelivery.ts) and commits the delivered
 * marks through the journal, so the next master resumes from them.
 *
 * A mark is a feed position (src/content/changes.ts): `index`, and `ordinal` null for "after every event of entry
 * index" or k for "after event k of it". Marks only move forward: a late proposal of a deposed master names a mark it
 * did deliver (a receiver answered 2xx), so it never opens a gap, and a mark behind the current one changes nothing.
 */

export interface WebhookMark {
  readonly index: number;
  readonly ordinal: number | null;
}

export interface WebhookFilter {
  readonly under?: string;
  /** Sorted, distinct. */
  readonly types?: readonly string[];
  readonly ops?: readonly string[];
}

export interface WebhookFailure {
  readonly message: string;
  readonly at: string;
  /** The receiver's HTTP status, when it answered. */
  readonly status?: number;
}

export interface Webhook {
  readonly id: string;
  readonly url: string;
  readonly filter: WebhookFilter;
  /** `v1.<base64url>`: AES-256-GCM under a key derived from the cluster secret. */
  readonly sealedSecret: string;
  readonly createdAt: string;
  readonly createdBy: string;
  /** Delivered through here (committed; the master may be a little further). */
  readonly mark: WebhookMark;
  readonly state: 'active' | 'broken';
  /** Why it is broken (a catalogue code and a message); absent while active. */
  readonly broken?: { readonly code: string; readonly message: string; readonly at: string };
  /** The latest failed delivery, kept after later successes; and failures in a row now (0 once one succeeds). */
  readonly lastError?: WebhookFailure;
  readonly failuresInARow: number;
}

export type Webhooks = Readonly<Record<string, Webhook>>;

export type WebhookChange =
  | { readonly type: 'webhookRegistered'; readonly webhook: Webhook }
  | { readonly type: 'webhookRemoved'; readonly id: string }
  /** The master's delivered marks (and delivery failures), batched. Marks move forward only. */
  | {
      readonly type: 'webhookMarks';
      readonly marks: readonly { readonly id: string; readonly mark: WebhookMark; readonly failuresInARow: number; readonly lastError?: WebhookFailure }[];
    }
  /** Delivery stops: the events it needs were pruned (CHANGES_COMPACTED), or another lasting cause. */
  | { readonly type: 'webhookBroken'; readonly id: string; readonly code: string; readonly message: string; readonly at: string };

/**
 * Fixed bounds every node applies alike (the node setting webhooks.max refuses earlier, at registration): most
 * webhooks in the state, and the sizes of what one holds.
 */
export const webhooksLimit = 256;
export const webhookUrlCharsMax = 2048;
export const webhookTextCharsMax = 512;
export const webhookFilterValuesMax = 64;
/** A content path's bound (src/content/limits.ts pathBytesMax; characters are at most as many as bytes). */
export const webhookUnderCharsMax = 4096;
export const webhookSealedSecretCharsMax = 1024;
const idPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isWebhookChange(change: { readonly type: string }): change is WebhookChange {
  return change.type === 'webhookRegistered' || change.type === 'webhookRemoved' || change.type === 'webhookMarks' || change.type === 'webhookBroken';
}

const text = (value: unknown, max: number): value is string => typeof value === 'string' && value.length > 0 && value.length <= max;
const count = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

export function markProblem(mark: unknown): string | null {
  if (typeof mark !== 'object' || mark === null) return 'the mark is not a position';
  const m = mark as Partial<WebhookMark>;
  if (!count(m.index) || (m.ordinal !== null && !count(m.ordinal))) return 'the mark is not a position (index, ordinal or null)';
  return null;
}

function failureProblem(failure: unknown): string | null {
  if (failure === undefined) return null;
  if (typeof failure !== 'object' || failure === null) return 'the last error is malformed';
  const f = failure as Partial<WebhookFailure>;
  if (!text(f.message, webhookTextCharsMax) || !text(f.at, 64) || (f.status !== undefined && !count(f.status))) return 'the last error is malformed';
  return null;
}

function filterProblem(filter: unknown): string | null {
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) return 'the filter is not an object';
  const f = filter as Record<string, unknown>;
  if (Object.keys(f).some((key) => key !== 'under' && key !== 'types' && key !== 'ops')) return 'the filter holds an unknown field';
  if (f['under'] !== undefined && !text(f['under'], webhookUnderCharsMax)) return 'the filter\'s under is malformed';
  for (const key of ['types', 'ops']) {
    const list = f[key];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.length === 0 || list.length > webhookFilterValuesMax || !list.every((v) => text(v, webhookTextCharsMax))) return `the filter's ${key} is malformed`;
  }
  return null;
}

const isId = (value: unknown): value is string => typeof value === 'string' && idPattern.test(value);

/** What is wrong with a webhook as the state would hold it, or null. */
export function webhookProblem(webhook: unknown): string | null {
  if (typeof webhook !== 'object' || webhook === null) return 'the webhook is not an object';
  const w = webhook as Partial<Webhook>;
  if (typeof w.id !== 'string' || !idPattern.test(w.id)) return 'the webhook id is not a UUID';
  if (!text(w.url, webhookUrlCharsMax)) return `the URL is empty or longer than ${webhookUrlCharsMax} characters`;
  if (!text(w.sealedSecret, webhookSealedSecretCharsMax)) return 'the sealed secret is malformed';
  if (!text(w.createdAt, 64) || !text(w.createdBy, webhookTextCharsMax)) return 'the creation stamp is malformed';
  if (w.state !== 'active' && w.state !== 'broken') return 'the state is neither active nor broken';
  if (!count(w.failuresInARow)) return 'failuresInARow is not a count';
  return filterProblem(w.filter) ?? markProblem(w.mark) ?? failureProblem(w.lastError);
}

/** What is wrong with a webhook change the master is asked to propose, or null (what the apply rules would ignore). */
export function webhookChangeProblem(webhooks: Webhooks, change: WebhookChange): string | null {
  switch (change.type) {
    case 'webhookRegistered': {
      const problem = webhookProblem(change.webhook);
      if (problem !== null) return problem;
      if (webhooks[change.webhook.id] !== undefined) return `a webhook ${change.webhook.id} exists already`;
      if (Object.keys(webhooks).length >= webhooksLimit) return `the cluster state already holds ${webhooksLimit} webhooks, the most it may`;
      return null;
    }
    case 'webhookRemoved':
      return isId(change.id) ? null : 'the webhook id is not a UUID';
    case 'webhookMarks':
      if (!Array.isArray(change.marks) || change.marks.length > webhooksLimit) return 'the marks are not a list of at most one per webhook';
      for (const m of change.marks as unknown[]) {
        if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'a mark is not an object';
        const entry = m as Partial<Extract<WebhookChange, { type: 'webhookMarks' }>['marks'][number]>;
        if (!isId(entry.id)) return 'a mark\'s webhook id is not a UUID';
        const problem = markProblem(entry.mark) ?? failureProblem(entry.lastError) ?? (count(entry.failuresInARow) ? null : 'failuresInARow is not a count');
        if (problem !== null) return problem;
      }
      return null;
    case 'webhookBroken':
      if (!isId(change.id)) return 'the webhook id is not a UUID';
      return text(change.code, 64) && text(change.message, webhookTextCharsMax) && text(change.at, 64) ? null : 'the broken code, message or time is malformed';
  }
}

/** Whether `a` is strictly after `b` in the feed (ordinal null: after every event of the entry). */
export function markAfter(a: WebhookMark, b: WebhookMark): boolean {
  if (a.index !== b.index) return a.index > b.index;
  if (a.ordinal === b.ordinal) return false;
  if (a.ordinal === null) return true;
  if (b.ordinal === null) return false;
  return a.ordinal > b.ordinal;
}

/** Deterministic and total, like every cluster-state rule: a change that does not fit changes nothing. */
export function applyWebhookChange(webhooks: Webhooks, change: WebhookChange): Webhooks {
  if (webhookChangeProblem(webhooks, change) !== null) return webhooks;
  switch (change.type) {
    case 'webhookRegistered':
      return withWebhook(webhooks, change.webhook);
    case 'webhookRemoved': {
      if (webhooks[change.id] === undefined) return webhooks;
      const rest: Record<string, Webhook> = {};
      for (const [id, hook] of Object.entries(webhooks)) if (id !== change.id) rest[id] = hook;
      return rest;
    }
    case 'webhookMarks': {
      let next = webhooks;
      for (const m of change.marks) {
        const hook = next[m.id];
        if (hook === undefined || hook.state !== 'active') continue;
        const mark = markAfter(m.mark, hook.mark) ? { index: m.mark.index, ordinal: m.mark.ordinal } : hook.mark;
        const lastError = m.lastError ?? hook.lastError;
        next = withWebhook(next, { ...hook, mark, failuresInARow: m.failuresInARow, ...(lastError !== undefined ? { lastError } : {}) });
      }
      return next;
    }
    case 'webhookBroken': {
      const hook = webhooks[change.id];
      if (hook === undefined || hook.state !== 'active') return webhooks;
      return withWebhook(webhooks, { ...hook, state: 'broken', broken: { code: change.code, message: change.message, at: change.at } });
    }
  }
}

/** Webhooks by id order, so that two nodes' states compare equal as JSON. */
function withWebhook(webhooks: Webhooks, hook: Webhook): Webhooks {
  const next: Record<string, Webhook> = {};
  for (const id of [...new Set([...Object.keys(webhooks), hook.id])].sort()) next[id] = id === hook.id ? hook : webhooks[id]!;
  return next;
}
