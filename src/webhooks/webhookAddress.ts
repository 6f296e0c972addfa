import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/**
 * Where a webhook may not connect unless webhooks.privateAddressesAllowed says so: loopback, private and
 * shared-address ranges, link-local (cloud metadata services live at 169.254.169.254), unspecified, multicast and
 * reserved addresses. Checked on the address actually connected to — after DNS, on every delivery — so a name that
 * resolves to such an address (DNS rebinding included) is refused like the literal.
 */
const refused = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  refused.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  refused.addSubnet(network, prefix, 'ipv6');
}

/** Whether `address` (an IP literal) is one a webhook may not reach by default; IPv4-mapped IPv6 counts as IPv4. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return refused.check(address, 'ipv4');
  if (family !== 6) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return refused.check(mapped[1]!, 'ipv4');
  return refused.check(address, 'ipv6');
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A dns.lookup for http.request that refuses private addresses (see above). */
export function publicOnlyLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err !== null) return callback(err, []);
    const list = addresses;
    const blocked = list.find((a) => isPrivateAddress(a.address));
    if (blocked !== undefined) {
      const error: NodeJS.ErrnoException = new Error(
        `${hostname} resolves to ${blocked.address}, a private, loopback or link-local address; webhooks.privateAddressesAllowed must be true to deliver there`,
      );
      error.code = 'EWEBHOOKADDRESS';
      return callback(error, []);
    }
    if (options.all === true) return callback(null, list);
    const first = list[0];
    if (first === undefined) return callback(Object.assign(new Error(`${hostname} resolves to no address`), { code: 'ENOTFOUND' }), []);
    callback(null, first.address, first.family);
  });
}
