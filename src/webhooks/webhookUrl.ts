import { webhookUrlCharsMax } from '../core/clusterWebhooks.js';
import { ConclaveError } from '../errors/catalogue.js';

/**
 * A webhook's target, checked at registration and again before each delivery (webhooks.hostsAllowed may have changed
 * since): http or https only, no user name or password in the URL (they would sit in the cluster state, readable in
 * every snapshot), no fragment, printable ASCII (an internationalised host is given in its xn-- form), at most
 * webhookUrlCharsMax characters, and a host that webhooks.hostsAllowed names when that list is not empty.
 *
 * Whether a hook may reach private addresses (this cluster's own nodes, a cloud's metadata service) is not decided
 * here: names resolve at delivery time, so only a list of allowed hosts closes that door (docs/operations.md).
 */
export function parseWebhookUrl(text: unknown, hostsAllowed: readonly string[]): URL {
  const refuse = (why: string) => new ConclaveError('WEBHOOK_URL_REFUSED', `The webhook URL ${why}.`, { parameter: 'url' });
  if (typeof text !== 'string' || text.length === 0) throw refuse('is missing: send {"url": "https://..."}');
  if (text.length > webhookUrlCharsMax) throw refuse(`is longer than ${webhookUrlCharsMax} characters`);
  if (!/^[\x21-\x7e]+$/.test(text)) throw refuse('holds spaces, control or non-ASCII characters (give an internationalised host in its xn-- form, and percent-encode the rest)');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw refuse('is not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw refuse(`must use http or https, not ${url.protocol.slice(0, 20)}`);
  if (url.username !== '' || url.password !== '') throw refuse('holds credentials (user:password@): they would be stored readable in the cluster state; verify the signature instead');
  if (url.hash !== '' || text.includes('#')) throw refuse('holds a fragment (#...), which is never sent');
  if (url.hostname === '') throw refuse('names no host');
  if (url.href.length > webhookUrlCharsMax) throw refuse(`is longer than ${webhookUrlCharsMax} characters once normalised`);
  if (!hostAllowed(url, hostsAllowed)) throw refuse(`names the host ${url.hostname}, which webhooks.hostsAllowed does not list`);
  return url;
}

export function hostAllowed(url: URL, hostsAllowed: readonly string[]): boolean {
  if (hostsAllowed.length === 0) return true;
  const host = bare(url.hostname);
  return hostsAllowed.some((allowed) => bare(allowed.toLowerCase()) === host);
}

/** An IPv6 literal without its brackets, for comparison. */
function bare(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
