import dns from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * Where webhooks may go (SSRF guard). Only http(s). Without WEBHOOK_ALLOW_PRIVATE, targets in
 * loopback, private, link-local, unique-local and other non-public ranges are refused, for
 * IPv4 and IPv6 alike (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` and NAT64
 * `64:ff9b::a.b.c.d` forms included). Checked twice: at submission for literal hosts
 * (`checkWebhookUrl`), and at delivery on every address a name resolves to (`guardedLookup`),
 * the checked addresses being the ones connected to (no second resolution to rebind).
 */

const V4_RANGES: [string, number, string][] = [
  ['0.0.0.0', 8, 'unspecified ("this network")'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared (carrier-grade NAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignment'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];

const V6_RANGES: [string, number, string][] = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['100::', 64, 'discard-only'],
  ['fc00::', 7, 'unique-local'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local'],
  ['ff00::', 8, 'multicast'],
];

/** IPv6 prefixes (/96) that embed an IPv4 address in their last 32 bits. */
const V4_EMBEDDING = ['::ffff:', '::', '64:ff9b::'];

const lists = new Map<string, BlockList>();
const listFor = (label: string) => {
  let l = lists.get(label);
  if (!l) lists.set(label, (l = new BlockList()));
  return l;
};
// IPv6 ranges first, so `::1` reads "loopback", not an embedded 0.0.0.1
for (const [net, prefix, label] of V6_RANGES) listFor(label).addSubnet(net, prefix, 'ipv6');
for (const [net, prefix, label] of V4_RANGES) {
  listFor(label).addSubnet(net, prefix, 'ipv4');
  const [a, b, c, d] = net.split('.').map(Number);
  const hex = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  for (const p of V4_EMBEDDING) listFor(label).addSubnet(`${p}${hex}`, 96 + prefix, 'ipv6');
}

/** The kind of non-public range an IP address is in ("loopback", "private", …), or null. */
export function nonPublicRange(address: string): string | null {
  const v = isIP(address);
  if (v === 0) return null;
  const type = v === 4 ? 'ipv4' : 'ipv6';
  for (const [label, list] of lists) if (list.check(address, type)) return label;
  return null;
}

const ALLOW_HINT = 'set WEBHOOK_ALLOW_PRIVATE=1 to allow private targets';

/** `[::1]` → `::1`, `Example.COM.` → `example.com` */
function bareHost(hostname: string): string {
  return hostname
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
}

/**
 * Submission-time check (synchronous, no DNS): an error message for the API's validation,
 * or null when the URL is acceptable. DNS names are checked again at delivery.
 */
export function checkWebhookUrl(url: string, allowPrivate: boolean): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'webhookUrl must be an absolute http(s) URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return `webhookUrl must use http or https, not ${u.protocol.replace(/:$/, '')}`;
  }
  const host = bareHost(u.hostname);
  if (host === '') return 'webhookUrl must name a host';
  if (allowPrivate) return null;
  if (host === 'localhost' || host.endsWith('.localhost')) {
    return `webhookUrl must not point at localhost (${ALLOW_HINT})`;
  }
  const range = nonPublicRange(host);
  if (range) return `webhookUrl must not point at a ${range} address (${host}); ${ALLOW_HINT}`;
  return null;
}

/** A delivery target that the URL policy forbids: never retried. */
export class WebhookRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookRefusedError';
  }
}

type LookupAll = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
) => void;

const systemLookup: LookupAll = (hostname, options, callback) =>
  dns.lookup(hostname, options, callback);

/**
 * A `lookup` for http.request: resolves every address of the name and refuses the
 * connection (WebhookRefusedError) if any of them is non-public, unless `allowPrivate`.
 */
export function guardedLookup(allowPrivate: boolean, resolve: LookupAll = systemLookup) {
  const lookup = (
    hostname: string,
    options: dns.LookupOptions,
    callback: (
      err: NodeJS.ErrnoException | null,
      address: string | dns.LookupAddress[],
      family?: number,
    ) => void,
  ) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      if (addresses.length === 0) {
        return callback(new Error(`${hostname} resolved to no address`), []);
      }
      if (!allowPrivate) {
        for (const a of addresses) {
          const range = nonPublicRange(a.address);
          if (range) {
            const msg = `webhook host ${hostname} resolves to a ${range} address (${a.address}); ${ALLOW_HINT}`;
            return callback(new WebhookRefusedError(msg), []);
          }
        }
      }
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
  return lookup as LookupFunction;
}

export type { LookupAll };
