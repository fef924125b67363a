import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Where the service may send requests on a client's behalf (webhooks, input URLs): the SSRF
 * guard. Only http(s) to a host name with a dot or an IP literal. Without `allowPrivate`
 * (WEBHOOK_ALLOW_PRIVATE) only global unicast addresses pass: ipaddr.js classifies every
 * special-purpose range (loopback, private, link-local, unique-local, CGNAT, TEST-NET,
 * benchmarking, 6to4, Teredo, NAT64 local-use, IPv4-translated `::ffff:0:a.b.c.d`, ...);
 * IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` and well-known NAT64
 * `64:ff9b::a.b.c.d` addresses are judged by the IPv4 address they carry.
 * Checked three times: the literal URL (`checkWebhookUrl`, synchronous), its name resolved at
 * submission (`checkWebhookTarget`: an unresolvable host is refused), and at delivery on
 * every address the name resolves to (`guardedLookup`), those being the addresses connected
 * to (no second resolution to rebind).
 */

/** ipaddr.js range names → the words our messages use. */
const LABELS: Record<string, string> = {
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'shared (carrier-grade NAT)',
  private: 'private',
  reserved: 'reserved or documentation (TEST-NET)',
  uniqueLocal: 'unique-local',
  deprecatedSiteLocal: 'link-local (deprecated site-local)',
  discard: 'discard-only',
  rfc6145: 'IPv4-translated (RFC 6145)',
  rfc6052: 'NAT64 local-use',
  '6to4': '6to4',
  teredo: 'Teredo',
  benchmarking: 'benchmarking',
  segmentRouting: 'segment routing',
};

/** IPv6 forms that carry an IPv4 address in their last 32 bits and reach it. */
const EMBEDDING = [
  ipaddr.parseCIDR('::ffff:0:0/96'),
  ipaddr.parseCIDR('::/96'),
  ipaddr.parseCIDR('64:ff9b::/96'),
];

/** A dotted-quad IPv4 or an IPv6 address (what URL hosts and DNS answers look like). */
const isIpLiteral = (host: string) =>
  host.includes(':') ? ipaddr.IPv6.isValid(host) : ipaddr.IPv4.isValidFourPartDecimal(host);

function embeddedV4(a: ipaddr.IPv6): ipaddr.IPv4 | null {
  if (a.range() === 'unspecified' || a.range() === 'loopback') return null;
  if (!EMBEDDING.some((net) => a.match(net))) return null;
  const b = a.toByteArray().slice(12);
  return new ipaddr.IPv4(b);
}

/** The kind of non-public range an IP address is in ("loopback", "private", …), or null. */
export function nonPublicRange(address: string): string | null {
  if (!isIpLiteral(address)) return null;
  let a = ipaddr.parse(address);
  if (a.kind() === 'ipv6') a = embeddedV4(a as ipaddr.IPv6) ?? a;
  const range = a.range();
  if (range === 'unicast') return null;
  return LABELS[range] ?? range;
}

/** The variable that allows private targets: webhooks', or input URLs' (DESIGN "Media in"). */
export type AllowVariable = 'WEBHOOK_ALLOW_PRIVATE' | 'INPUT_URL_ALLOW_PRIVATE';
const hint = (v: AllowVariable) => `set ${v}=1 to allow private targets`;

/** `[::1]` → `::1`, `Example.COM.` → `example.com` (one trailing dot: the root). */
function bareHost(hostname: string): string {
  return hostname
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
}

/**
 * Submission-time check of the URL itself (synchronous, no DNS): an error message for the
 * API's validation, or null when the URL is acceptable. `what` names the field.
 */
export function checkWebhookUrl(
  url: string,
  allowPrivate: boolean,
  what = 'webhookUrl',
  allow: AllowVariable = 'WEBHOOK_ALLOW_PRIVATE',
) {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `${what} must be an absolute http(s) URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return `${what} must use http or https, not ${u.protocol.replace(/:$/, '')}`;
  }
  // `http:///x` parses as host "x": the URL as written must name its host after "//"
  if (!/^https?:\/\/[^/?#]/i.test(url.trim())) return `${what} must name a host after "//"`;
  const host = bareHost(u.hostname);
  if (host === '') return `${what} must name a host`;
  if (!isIpLiteral(host)) {
    if (host.split('.').some((label) => label === '')) return `${what} has an empty host label`;
    if (!allowPrivate && (host === 'localhost' || host.endsWith('.localhost'))) {
      return `${what} must not point at localhost (${hint(allow)})`;
    }
    if (!allowPrivate && !host.includes('.')) {
      return `${what} must name a fully qualified host (with a dot), not "${host.slice(0, 64)}"`;
    }
    return null;
  }
  if (allowPrivate) return null;
  const range = nonPublicRange(host);
  if (range) return `${what} must not point at a ${range} address (${host}); ${hint(allow)}`;
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

/** DNS answers that mean "this name does not exist" (not a passing outage). */
const NO_SUCH_HOST = new Set(['ENOTFOUND', 'ENODATA', 'ENONAME']);
export const isNoSuchHost = (err: unknown) =>
  NO_SUCH_HOST.has(String((err as NodeJS.ErrnoException | undefined)?.code));

/** The first non-public address among `addresses`, as a refusal message; null if all are public. */
function refusal(
  hostname: string,
  addresses: dns.LookupAddress[],
  allow: AllowVariable = 'WEBHOOK_ALLOW_PRIVATE',
): string | null {
  for (const a of addresses) {
    const range = nonPublicRange(a.address);
    if (range) {
      return `host ${hostname} resolves to a ${range} address (${a.address}); ${hint(allow)}`;
    }
  }
  return null;
}

/** Bound of the submission-time resolution. */
export const SUBMIT_RESOLVE_TIMEOUT_MS = 2_000;

/**
 * Submission-time check with DNS: the literal check, then the host must resolve (within
 * SUBMIT_RESOLVE_TIMEOUT_MS) and, without `allowPrivate`, only to public addresses.
 */
export async function checkWebhookTarget(
  url: string,
  allowPrivate: boolean,
  resolve: LookupAll = systemLookup,
  what = 'webhookUrl',
): Promise<string | null> {
  const literal = checkWebhookUrl(url, allowPrivate, what);
  if (literal) return literal;
  const host = bareHost(new URL(url).hostname);
  if (isIpLiteral(host)) return null;
  const found = await new Promise<dns.LookupAddress[] | NodeJS.ErrnoException>((done) => {
    const timer = setTimeout(
      () => done(Object.assign(new Error('timed out'), { code: 'ETIMEOUT' })),
      SUBMIT_RESOLVE_TIMEOUT_MS,
    );
    resolve(host, { all: true }, (err, addresses) => {
      clearTimeout(timer);
      done(err ?? addresses);
    });
  });
  if (!Array.isArray(found) || found.length === 0) {
    const code = Array.isArray(found) ? 'no address' : (found.code ?? found.message);
    return `${what} host ${host.slice(0, 64)} does not resolve (${code})`;
  }
  const refused = allowPrivate ? null : refusal(host, found);
  return refused ? `${what} ${refused}` : null;
}

/**
 * A `lookup` for http.request: resolves every address of the name and refuses the
 * connection (WebhookRefusedError) if any of them is non-public, unless `allowPrivate`.
 */
export function guardedLookup(
  allowPrivate: boolean,
  resolve: LookupAll = systemLookup,
  subject: { label: string; allow: AllowVariable } = {
    label: 'webhook',
    allow: 'WEBHOOK_ALLOW_PRIVATE',
  },
) {
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
      const refused = allowPrivate ? null : refusal(hostname, addresses, subject.allow);
      if (refused) return callback(new WebhookRefusedError(`${subject.label} ${refused}`), []);
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
  return lookup as LookupFunction;
}

export type { LookupAll };
