import assert from 'node:assert/strict';
import type { SrvRecord } from 'node:dns';
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';

import { canonicalAddress, formatEndpoint, type SeedSpec } from './seeds.js';

/** The two levels discovery logs at; a pino Logger fits. */
export interface DiscoveryLogger {
  warn(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}

export interface SeedResolverOptions {
  /**
   * Queried for every name, every round. A node:dns/promises Resolver rather than dns.lookup: lookup goes through
   * getaddrinfo, whose answers the OS (nscd, systemd-resolved) may cache past a pod's death, and cannot do SRV.
   * Build it with createDnsResolver to set the per-query timeout and tries.
   */
  readonly resolver: Resolver;
  readonly logger: DiscoveryLogger;
  /** Addresses one round yields at most; beyond it the first addressesMax in sorted order are kept. */
  readonly addressesMax: number;
  /** DNS queries outstanding at once, so a large SRV answer does not fire hundreds of queries together. */
  readonly queriesInFlightMax?: number;
  /** Targets taken from one SRV answer at most (the first in name order), before their A/AAAA queries. */
  readonly srvTargetsMax?: number;
}

export const queriesInFlightMaxDefault = 16;
export const srvTargetsMaxDefault = 256;

export interface DnsResolverOptions {
  /** c-ares' timeout for a query's first try at each server; later tries wait longer (c-ares backs off). */
  readonly timeoutMs: number;
  /** Attempts per server before the query fails with ETIMEOUT. */
  readonly tries: number;
  /** `ip` or `ip:port` of the servers to ask; the system's (resolv.conf) when absent. */
  readonly servers?: readonly string[];
}

export function createDnsResolver(options: DnsResolverOptions): Resolver {
  assert.ok(Number.isInteger(options.timeoutMs) && options.timeoutMs >= 1, `timeoutMs must be a positive integer, got ${options.timeoutMs}`);
  assert.ok(Number.isInteger(options.tries) && options.tries >= 1, `tries must be a positive integer, got ${options.tries}`);
  const resolver = new Resolver({ timeout: options.timeoutMs, tries: options.tries });
  if (options.servers !== undefined) resolver.setServers([...options.servers]);
  return resolver;
}

interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** What one name resolved to this round; a failure carries the DNS error code the operator can look up. */
interface NameResult {
  readonly addresses: readonly string[];
  readonly failure?: { readonly rrtype: 'A' | 'AAAA' | 'A/AAAA'; readonly code: string };
}

/**
 * Hands out a bounded number of slots; a released slot passes straight to the next waiter in FIFO order. The
 * waiting list needs no bound of its own: a round queues at most two queries per name, and the names are bounded
 * by seedsMax and srvTargetsMax.
 */
class QueryLimiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly slotsMax: number) {}

  async run<T>(query: () => Promise<T>): Promise<T> {
    if (this.active < this.slotsMax) this.active += 1;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await query();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.active -= 1;
    }
  }
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

// RFC 6761 §6.3: localhost names are loopback by definition, and no DNS server need answer for them; without this,
// the most common development seed (`localhost:7401`) would fail, since the Resolver does not read /etc/hosts.
function isLocalhost(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost');
}

/**
 * A sort key in which IPv4 precedes IPv6 and addresses compare as numbers, so 10.0.0.9 comes before 10.0.0.10 and
 * every node, given the same answers, keeps the same addressesMax peers.
 */
function endpointKey(endpoint: Endpoint): string {
  const port = String(endpoint.port).padStart(5, '0');
  if (isIP(endpoint.address) === 4) {
    return `4 ${endpoint.address.split('.').map((octet) => octet.padStart(3, '0')).join('.')} ${port}`;
  }
  const zoneAt = endpoint.address.indexOf('%');
  const bare = zoneAt < 0 ? endpoint.address : endpoint.address.slice(0, zoneAt);
  const zone = zoneAt < 0 ? '' : endpoint.address.slice(zoneAt);
  const groupsOf = (part: string): string[] => (part === '' ? [] : part.split(':').flatMap((group) => {
    if (!group.includes('.')) return [group];
    const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number];
    return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
  }));
  const gap = bare.indexOf('::');
  const head = groupsOf(gap < 0 ? bare : bare.slice(0, gap));
  const tail = gap < 0 ? [] : groupsOf(bare.slice(gap + 2));
  const zeros = new Array<string>(8 - head.length - tail.length).fill('0');
  return `6 ${[...head, ...zeros, ...tail].map((group) => group.padStart(4, '0')).join(':')}${zone} ${port}`;
}

/**
 * Turns seed specifications into the `host:port` addresses to probe, afresh on every call: a discovery round calls
 * resolveAll once, so a headless Service whose pods changed yields the new pod IPs on the next round. (c-ares may
 * still reuse an answer within its TTL, as DNS intends.)
 *
 * A name that fails (NXDOMAIN, timeout, refused) is logged and skipped: one stale seed must not stop a node from
 * finding the peers the other seeds name.
 */
export class SeedResolver {
  private readonly resolver: Resolver;
  private readonly logger: DiscoveryLogger;
  private readonly addressesMax: number;
  private readonly srvTargetsMax: number;
  private readonly limiter: QueryLimiter;
  // Once per resolver: a configuration that truncates does so every round, and one warning says all there is to say.
  private truncationWarned = false;
  private cancelled = false;

  constructor(options: SeedResolverOptions) {
    const queriesInFlightMax = options.queriesInFlightMax ?? queriesInFlightMaxDefault;
    const srvTargetsMax = options.srvTargetsMax ?? srvTargetsMaxDefault;
    for (const [what, value] of [['addressesMax', options.addressesMax], ['queriesInFlightMax', queriesInFlightMax], ['srvTargetsMax', srvTargetsMax]] as const) {
      assert.ok(Number.isInteger(value) && value >= 1, `${what} must be a positive integer, got ${value}`);
    }
    this.resolver = options.resolver;
    this.logger = options.logger;
    this.addressesMax = options.addressesMax;
    this.srvTargetsMax = srvTargetsMax;
    this.limiter = new QueryLimiter(queriesInFlightMax);
  }

  /**
   * Every address the specs name this round, as `host:port` (`[addr]:port` for IPv6), deduplicated, sorted (IPv4
   * before IPv6, numerically, then by port) and at most addressesMax long. Never rejects for a DNS failure.
   */
  async resolveAll(specs: readonly SeedSpec[]): Promise<string[]> {
    // One lookup per name per round, however many specs or SRV records name it.
    const names = new Map<string, Promise<NameResult>>();
    const endpoints = new Map<string, Endpoint>();
    const add = (address: string, port: number): void => {
      const canonical = canonicalAddress(address);
      // c-ares only returns well-formed addresses; a malformed one means a bug worth a crash, not a skipped peer.
      assert.ok(canonical !== undefined, `resolver returned a malformed address ${JSON.stringify(address)}`);
      endpoints.set(formatEndpoint(canonical, port), { address: canonical, port });
    };
    const addressesOf = async (name: string): Promise<readonly string[]> => {
      let pending = names.get(name);
      if (pending === undefined) {
        pending = this.resolveName(name);
        names.set(name, pending);
        const result = await pending;
        if (result.failure !== undefined) this.logFailure(name, result.failure.rrtype, result.failure.code);
        return result.addresses;
      }
      return (await pending).addresses;
    };

    await Promise.all(specs.map(async (spec) => {
      switch (spec.kind) {
        case 'address':
          add(spec.address, spec.port);
          return;
        case 'host':
        case 'dns':
          for (const address of await addressesOf(spec.name)) add(address, spec.port);
          return;
        case 'srv':
          for (const { address, port } of await this.resolveSrv(spec.name, addressesOf)) add(address, port);
          return;
      }
    }));

    const keyed = [...endpoints].map(([text, endpoint]) => ({ text, key: endpointKey(endpoint) }));
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    if (keyed.length > this.addressesMax) {
      const fields = { addressesFound: keyed.length, addressesMax: this.addressesMax, firstDropped: keyed[this.addressesMax]!.text };
      if (this.truncationWarned) {
        this.logger.debug(fields, 'discovery: more addresses than addressesMax; keeping the first in sorted order');
      } else {
        this.truncationWarned = true;
        this.logger.warn(fields, 'discovery: the seeds name more addresses than addressesMax; probing only the first addressesMax in sorted order (warned once)');
      }
    }
    const addresses = keyed.slice(0, this.addressesMax).map((entry) => entry.text);
    this.logger.debug({ seeds: specs.length, names: names.size, addresses: addresses.length }, 'discovery: seeds resolved');
    return addresses;
  }

  /**
   * Cancels the queries in flight (they end as ECANCELLED, logged at debug), so that a node shutting down does not
   * wait out DNS timeouts. A resolveAll in progress still resolves, with what it found before the cancellation.
   */
  cancel(): void {
    this.cancelled = true;
    this.resolver.cancel();
  }

  private async resolveName(name: string): Promise<NameResult> {
    if (isLocalhost(name)) return { addresses: ['127.0.0.1', '::1'] };
    if (isIP(name) !== 0) return { addresses: [name] }; // an SRV target written as an address, against RFC 2782
    const [v4, v6] = await Promise.allSettled([
      this.limiter.run(() => this.resolver.resolve4(name)),
      this.limiter.run(() => this.resolver.resolve6(name)),
    ]);
    const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    // ENODATA means the name exists without records of that type: an IPv4-only Service has no AAAA, and that is fine.
    const failures = ([['A', v4], ['AAAA', v6]] as const)
      .filter(([, outcome]) => outcome.status === 'rejected')
      .map(([rrtype, outcome]) => ({ rrtype, code: errorCode((outcome as PromiseRejectedResult).reason) }));
    const real = failures.filter((failure) => failure.code !== 'ENODATA');
    if (addresses.length > 0) {
      // One family answered: probe what we have. The other family's failure goes to debug, or a server that drops
      // AAAA queries would warn every round about a cluster that works.
      for (const failure of real) this.logger.debug({ name, rrtype: failure.rrtype, code: failure.code }, 'discovery: one address family failed to resolve');
      return { addresses };
    }
    if (real.length === 0) return { addresses, failure: { rrtype: 'A/AAAA', code: 'ENODATA' } };
    const same = real.length === 2 && real[0]!.code === real[1]!.code;
    return { addresses, failure: same ? { rrtype: 'A/AAAA', code: real[0]!.code } : real[0]! };
  }

  private async resolveSrv(name: string, addressesOf: (name: string) => Promise<readonly string[]>): Promise<Endpoint[]> {
    let records: SrvRecord[];
    try {
      records = await this.limiter.run(() => this.resolver.resolveSrv(name));
    } catch (err) {
      this.logFailure(name, 'SRV', errorCode(err));
      return [];
    }
    // Priority and weight choose one server for a client's request; discovery wants every peer, so both are
    // ignored. A target of "." means the service is decidedly absent (RFC 2782), and port 0 cannot be dialled.
    const usable = records.filter((record) => record.name !== '' && record.name !== '.' && record.port !== 0);
    usable.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.port - b.port));
    if (usable.length > this.srvTargetsMax) {
      this.logger.warn({ name, srvRecords: usable.length, srvTargetsMax: this.srvTargetsMax }, 'discovery: SRV answer has more targets than srvTargetsMax; resolving the first in name order');
    }
    const kept = usable.slice(0, this.srvTargetsMax);
    const resolved = await Promise.all(kept.map(async (record) => {
      const target = record.name.toLowerCase().replace(/\.$/, '');
      return (await addressesOf(target)).map((address) => ({ address, port: record.port }));
    }));
    return resolved.flat();
  }

  private logFailure(name: string, rrtype: string, code: string): void {
    if (this.cancelled && code === 'ECANCELLED') {
      this.logger.debug({ name, rrtype, code }, 'discovery: query cancelled');
      return;
    }
    const fields: Record<string, unknown> = { name, rrtype, code };
    // The Resolver sends names as written: resolv.conf search domains are not applied, so `conclave-headless`
    // alone does not become conclave-headless.<namespace>.svc.cluster.local as it would for getaddrinfo.
    if (code === 'ENOTFOUND' && !name.includes('.')) fields['hint'] = 'search domains are not applied: write the fully qualified name';
    this.logger.warn(fields, 'discovery: cannot resolve a seed name; skipped this round, the other seeds still count');
  }
}
