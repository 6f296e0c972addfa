import assert from 'node:assert/strict';
import { isIP, isIPv4, isIPv6, SocketAddress } from 'node:net';

/**
 * Seed specifications, as written after `--seed` or in a YAML list, parsed once at start-up so that a typo is a
 * clear refusal before the node joins anything, not a silent empty discovery round later.
 *
 * Forms:
 *   host:port, host           an IPv4 literal, or a host name resolved with A and AAAA every round
 *   [ipv6]:port, [ipv6]       an IPv6 literal (brackets required: `2001:db8::1` alone cannot be split from a port)
 *   dns:name:port             every A and AAAA record of name, every round (a Kubernetes headless Service)
 *   srv:_service._proto.name  every SRV record of the name: each target's A and AAAA records, at the record's port
 */
export type SeedSpec =
  | { readonly kind: 'address'; readonly source: string; readonly address: string; readonly family: 4 | 6; readonly port: number }
  | { readonly kind: 'host'; readonly source: string; readonly name: string; readonly port: number }
  | { readonly kind: 'dns'; readonly source: string; readonly name: string; readonly port: number }
  | { readonly kind: 'srv'; readonly source: string; readonly name: string };

export type DiscoveryErrorCode = 'INVALID_SEED' | 'TOO_MANY_SEEDS';

/** An operating error of discovery's configuration: the operator must change the seeds; retrying cannot help. */
export class DiscoveryError extends Error {
  readonly code: DiscoveryErrorCode;
  /** The offending specification as the operator wrote it (absent for TOO_MANY_SEEDS). */
  readonly spec: string | undefined;
  readonly retryable = false;

  constructor(code: DiscoveryErrorCode, message: string, spec?: string) {
    super(message);
    this.name = 'DiscoveryError';
    this.code = code;
    this.spec = spec;
  }
}

export function isDiscoveryError(err: unknown): err is DiscoveryError {
  return err instanceof DiscoveryError;
}

export const seedFormsAccepted = 'host:port, host, [ipv6]:port, [ipv6], dns:name:port, srv:_service._proto.name';

/** Far above any real seed list; it keeps one discovery round's DNS traffic bounded whatever the configuration says. */
export const seedsMaxDefault = 256;
/** A DNS name is at most 253 characters; the rest is room for a prefix and a port. */
const specCharsMax = 300;
/** Enough of a rejected spec to recognise it, without copying a runaway argument into every log line. */
const specQuotedCharsMax = 80;

function invalid(spec: string, reason: string): DiscoveryError {
  const shown = spec.length > specQuotedCharsMax ? `${spec.slice(0, specQuotedCharsMax)}…` : spec;
  return new DiscoveryError('INVALID_SEED', `invalid seed ${JSON.stringify(shown)}: ${reason}; accepted forms: ${seedFormsAccepted}`, spec);
}

function assertPort(port: number, what: string): void {
  assert.ok(Number.isInteger(port) && port >= 1 && port <= 65535, `${what} must be a port from 1 to 65535, got ${port}`);
}

function parsePort(spec: string, text: string): number {
  // Digits only: Number() would take '0x1f', ' 80' or '1e3', which nobody means as a port.
  const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) throw invalid(spec, `the port ${JSON.stringify(text)} is not a whole number from 1 to 65535`);
  return port;
}

// Letters, digits and hyphens (RFC 1123), plus underscores: Docker and Compose service names carry them and
// resolve fine, and SRV owner names need them.
const labelPattern = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** The normalised name (lower case, no trailing dot), or undefined when it is not a usable DNS name. */
function hostName(text: string): string | undefined {
  const name = (text.endsWith('.') ? text.slice(0, -1) : text).toLowerCase();
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  if (!labels.every((label) => labelPattern.test(label))) return undefined;
  // An all-numeric last label means a mistyped IPv4 address (999.1.1.1, 10.0.0), never a real name (RFC 3696 §2).
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return undefined;
  return name;
}

/**
 * The one text form of an IP address, so that `[2001:DB8:0::1]` from a seed and `2001:db8::1` from an AAAA answer
 * count as one peer. A zone index (fe80::1%eth0) is kept: the address is unreachable without it.
 */
export function canonicalAddress(text: string): string | undefined {
  if (isIPv4(text)) return text; // net.isIPv4 refuses leading zeros and short forms, so what passes is canonical
  if (!isIPv6(text)) return undefined;
  const zoneAt = text.indexOf('%');
  const zone = zoneAt < 0 ? '' : text.slice(zoneAt);
  if (zone !== '' && !/^%[A-Za-z0-9_.-]{1,64}$/.test(zone)) return undefined;
  const bare = zoneAt < 0 ? text : text.slice(0, zoneAt);
  return new SocketAddress({ address: bare, family: 'ipv6' }).address + zone;
}

/** `host:port`, with an IPv6 address in brackets so the port stays separable (RFC 3986 authority form). */
export function formatEndpoint(address: string, port: number): string {
  return isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

function literal(spec: string, address: string, port: number): SeedSpec {
  return { kind: 'address', source: spec, address, family: isIP(address) === 6 ? 6 : 4, port };
}

function parseBracketed(spec: string, text: string, defaultPort: number): SeedSpec {
  const close = text.indexOf(']');
  if (close < 0) throw invalid(spec, 'a "[" opens an IPv6 address but no "]" closes it');
  const address = canonicalAddress(text.slice(1, close));
  if (address === undefined || !isIPv6(address.split('%')[0]!)) {
    throw invalid(spec, `${JSON.stringify(text.slice(1, close))} between the brackets is not an IPv6 address`);
  }
  const rest = text.slice(close + 1);
  if (rest === '') return literal(spec, address, defaultPort);
  if (!rest.startsWith(':')) throw invalid(spec, 'only ":port" may follow the closing "]"');
  return literal(spec, address, parsePort(spec, rest.slice(1)));
}

function parseDns(spec: string, rest: string): SeedSpec {
  const colon = rest.lastIndexOf(':');
  if (colon < 0) throw invalid(spec, 'a dns: seed needs a port (dns:name:port)');
  const nameText = rest.slice(0, colon);
  if (isIP(nameText) !== 0 || nameText.startsWith('[')) {
    throw invalid(spec, 'a dns: seed takes a name to resolve; write an IP address without the dns: prefix');
  }
  const name = hostName(nameText);
  if (name === undefined) throw invalid(spec, `${JSON.stringify(nameText)} is not a valid DNS name`);
  return { kind: 'dns', source: spec, name, port: parsePort(spec, rest.slice(colon + 1)) };
}

function parseSrv(spec: string, rest: string): SeedSpec {
  if (rest.includes(':')) throw invalid(spec, 'an srv: seed takes no port: each SRV record carries its own');
  const name = hostName(rest);
  const labels = name?.split('.') ?? [];
  // RFC 2782 owner names: _service._proto.name. Requiring the underscores catches `srv:myservice.example`,
  // which would otherwise be a silent NXDOMAIN every round.
  if (name === undefined || labels.length < 3 || !labels[0]!.startsWith('_') || !labels[1]!.startsWith('_')) {
    throw invalid(spec, `${JSON.stringify(rest)} is not an SRV name of the form _service._proto.name (e.g. _transport._tcp.conclave.example)`);
  }
  return { kind: 'srv', source: spec, name };
}

/**
 * Parses one seed specification. `defaultPort` (the transport port) applies to a host or [ipv6] without a port.
 * Throws DiscoveryError INVALID_SEED naming the spec, the reason and the accepted forms.
 */
export function parseSeed(spec: string, defaultPort: number): SeedSpec {
  assertPort(defaultPort, 'defaultPort');
  const text = spec.trim();
  if (text === '') throw invalid(spec, 'the seed is empty');
  if (text.length > specCharsMax) throw invalid(spec, `the seed is longer than ${specCharsMax} characters`);
  if (text.includes('://')) throw invalid(spec, 'a seed is an address, not a URL');
  if (text.startsWith('[')) return parseBracketed(spec, text, defaultPort);

  // `dns:7400` is the host named "dns" at port 7400; a prefix is only a prefix when a name follows it.
  const prefixed = /^(dns|srv):(.*)$/i.exec(text);
  if (prefixed !== null && !/^[0-9]+$/.test(prefixed[2]!)) {
    return prefixed[1]!.toLowerCase() === 'dns' ? parseDns(spec, prefixed[2]!) : parseSrv(spec, prefixed[2]!);
  }

  if (isIPv6(text)) throw invalid(spec, `an IPv6 address goes in brackets: [${text}] or [${text}]:port`);
  const colons = text.split(':').length - 1;
  if (colons > 1) throw invalid(spec, 'too many ":" for host:port (IPv6 addresses go in brackets)');
  const [hostText, portText] = colons === 1 ? [text.slice(0, text.indexOf(':')), text.slice(text.indexOf(':') + 1)] : [text, undefined];
  const port = portText === undefined ? defaultPort : parsePort(spec, portText);
  if (isIPv4(hostText)) return literal(spec, hostText, port);
  const name = hostName(hostText);
  if (name === undefined) throw invalid(spec, `${JSON.stringify(hostText)} is neither an IPv4 address nor a valid host name`);
  return { kind: 'host', source: spec, name, port };
}

export interface ParseSeedsOptions {
  /** The transport port, for seeds written without one. */
  readonly defaultPort: number;
  readonly seedsMax?: number;
}

/** A key that makes `node1:7400` and `NODE1.:7400` one seed, so a round does not query the same name twice for it. */
function seedKey(seed: SeedSpec): string {
  switch (seed.kind) {
    case 'address': return `address ${formatEndpoint(seed.address, seed.port)}`;
    case 'host': return `host ${seed.name}:${seed.port}`;
    case 'dns': return `dns ${seed.name}:${seed.port}`;
    case 'srv': return `srv ${seed.name}`;
  }
}

/**
 * Parses every seed (the repeatable `--seed` flag, or a YAML list), dropping exact duplicates and keeping the
 * first occurrence's order. The first malformed spec throws INVALID_SEED; more than seedsMax throws TOO_MANY_SEEDS.
 */
export function parseSeeds(specs: readonly string[], options: ParseSeedsOptions): SeedSpec[] {
  const seedsMax = options.seedsMax ?? seedsMaxDefault;
  assert.ok(Number.isInteger(seedsMax) && seedsMax >= 1, `seedsMax must be a positive integer, got ${seedsMax}`);
  if (specs.length > seedsMax) {
    throw new DiscoveryError('TOO_MANY_SEEDS', `${specs.length} seeds given, at most ${seedsMax} are accepted; use a dns: or srv: seed to name many peers at once`);
  }
  const seen = new Set<string>();
  const seeds: SeedSpec[] = [];
  for (const spec of specs) {
    const seed = parseSeed(spec, options.defaultPort);
    const key = seedKey(seed);
    if (seen.has(key)) continue;
    seen.add(key);
    seeds.push(seed);
  }
  return seeds;
}
