import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';

import { isPrivateAddress, publicOnlyLookup } from './webhookAddress.js';

export interface PostOptions {
  readonly timeoutMs: number;
  /** Bytes of the answer read at most; past it the socket is destroyed. */
  readonly responseBytesMax: number;
  readonly signal: AbortSignal;
  /** Whether loopback, private and link-local addresses may be reached (webhooks.privateAddressesAllowed). */
  readonly privateAddressesAllowed: boolean;
}

export type PostOutcome =
  | { readonly ok: true; readonly status: number }
  | { readonly ok: false; readonly status?: number; readonly message: string };

/**
 * One POST of a delivery. A 2xx answer delivers; anything else (another status, a redirect — never followed: it
 * could point anywhere, past webhooks.hostsAllowed —, a connection error, the timeout) fails and is retried.
 * The answer's body is read up to responseBytesMax for the error shown to operators, then the connection is cut.
 */
export function postWebhook(url: URL, headers: Record<string, string>, body: string, options: PostOptions): Promise<PostOutcome> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const literal = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!options.privateAddressesAllowed && isIP(literal) !== 0 && isPrivateAddress(literal)) {
    return Promise.resolve({ ok: false, message: `${literal} is a private, loopback or link-local address; webhooks.privateAddressesAllowed must be true to deliver there` });
  }
  return new Promise<PostOutcome>((resolve) => {
    let settled = false;
    const finish = (outcome: PostOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      req.destroy();
      resolve(outcome);
    };
    const payload = Buffer.from(body, 'utf8');
    const req = send(url, {
      method: 'POST',
      ...(options.privateAddressesAllowed ? {} : { lookup: publicOnlyLookup }),
      headers: { ...headers, 'content-type': 'application/json', 'content-length': String(payload.length), 'user-agent': 'Conclave-Webhook/1' },
    });
    const timer = setTimeout(() => finish({ ok: false, message: `no answer within ${options.timeoutMs} ms (webhooks.deliveryTimeoutMs)` }), options.timeoutMs);
    const onAbort = () => finish({ ok: false, message: 'delivery stopped: this node is no longer the master' });
    options.signal.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => finish({ ok: false, message: `the request failed: ${err.message}`.slice(0, 300) }));
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let bytes = 0;
      const done = () => {
        if (status >= 200 && status < 300) return finish({ ok: true, status });
        const text = Buffer.concat(chunks).toString('utf8').replace(/[^\x20-\x7e]+/g, ' ').trim().slice(0, 200);
        const redirect = status >= 300 && status < 400 ? ' (redirects are not followed)' : '';
        finish({ ok: false, status, message: `the receiver answered ${status}${redirect}${text !== '' ? `: ${text}` : ''}` });
      };
      res.on('data', (chunk: Buffer) => {
        if (bytes < options.responseBytesMax) chunks.push(chunk.subarray(0, options.responseBytesMax - bytes));
        bytes += chunk.length;
        if (bytes >= options.responseBytesMax) done();
      });
      res.on('end', done);
      res.on('error', done);
    });
    if (options.signal.aborted) onAbort();
    else req.end(payload);
  });
}
