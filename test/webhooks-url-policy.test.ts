import type { LookupAddress } from 'node:dns';
import {
  checkWebhookTarget,
  checkWebhookUrl,
  guardedLookup,
  nonPublicRange,
  WebhookRefusedError,
  type LookupAll,
} from '../src/webhooks/url-policy';

describe('checkWebhookUrl (submission time, literal hosts)', () => {
  it.each([
    'ftp://example.com/hook',
    'file:///etc/passwd',
    'javascript:alert(1)',
    'ws://example.com/hook',
    'not a url',
    '/relative/path',
  ])('refuses %s (not an absolute http(s) URL)', (url) => {
    expect(checkWebhookUrl(url, false)).toMatch(/webhookUrl must/);
    expect(checkWebhookUrl(url, true)).toMatch(/webhookUrl must/);
  });

  it.each([
    ['http://127.0.0.1/hook', 'loopback'],
    ['http://127.8.9.10:8080/hook', 'loopback'],
    ['http://0x7f.1/hook', 'loopback'], // WHATWG URL normalizes it to 127.0.0.1
    ['http://2130706433/hook', 'loopback'],
    ['http://[::1]/hook', 'loopback'],
    ['http://[::ffff:127.0.0.1]/hook', 'loopback'],
    ['http://[::ffff:7f00:1]/hook', 'loopback'],
    ['http://10.1.2.3/hook', 'private'],
    ['http://172.16.0.1/hook', 'private'],
    ['http://172.31.255.254/hook', 'private'],
    ['http://192.168.1.1/hook', 'private'],
    ['http://[::ffff:192.168.1.1]/hook', 'private'],
    ['http://[64:ff9b::10.0.0.1]/hook', 'private'],
    ['http://169.254.169.254/latest/meta-data', 'link-local'],
    ['http://[fe80::1]/hook', 'link-local'],
    ['http://[febf::1]/hook', 'link-local'],
    ['http://[fc00::1]/hook', 'unique-local'],
    ['http://[fd12:3456::1]/hook', 'unique-local'],
    ['http://0.0.0.0/hook', 'unspecified'],
    ['http://[::]/hook', 'unspecified'],
    ['http://100.64.0.1/hook', 'shared'],
    ['http://224.0.0.1/hook', 'multicast'],
    // the gaps of issue #14
    ['http://[::ffff:0:127.0.0.1]/hook', 'IPv4-translated'],
    ['http://[::ffff:0:8.8.8.8]/hook', 'IPv4-translated'],
    ['http://[2002:7f00:1::1]/hook', '6to4'],
    ['http://[2002:808:808::1]/hook', '6to4'],
    ['http://[64:ff9b:1::a00:1]/hook', 'NAT64 local-use'],
    ['http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook', 'Teredo'],
    ['http://192.0.2.10/hook', 'TEST-NET'],
    ['http://198.51.100.7/hook', 'TEST-NET'],
    ['http://203.0.113.99/hook', 'TEST-NET'],
    ['http://[2001:db8::1]/hook', 'documentation'],
    ['http://255.255.255.255/hook', 'broadcast'],
  ])('refuses %s (%s)', (url, kind) => {
    const msg = checkWebhookUrl(url, false);
    expect(msg).toContain(kind);
    expect(msg).toContain('WEBHOOK_ALLOW_PRIVATE');
    expect(checkWebhookUrl(url, true)).toBeNull();
  });

  it.each(['http://localhost:3000/hook', 'http://LOCALHOST./hook', 'https://api.localhost/x'])(
    'refuses %s (localhost)',
    (url) => {
      expect(checkWebhookUrl(url, false)).toMatch(/localhost/);
      expect(checkWebhookUrl(url, true)).toBeNull();
    },
  );

  it.each(['http://localhost../hook', 'http://a..example.com/hook'])(
    'refuses %s (an empty host label)',
    (url) => {
      expect(checkWebhookUrl(url, false)).toMatch(/empty host label/);
    },
  );

  it('refuses http:///x (no host after "//", which WHATWG URL would read as host "x")', () => {
    expect(checkWebhookUrl('http:///x', false)).toMatch(/must name a host/);
    expect(checkWebhookUrl('http:///x', true)).toMatch(/must name a host/);
  });

  it('refuses single-label hosts unless private targets are allowed', () => {
    expect(checkWebhookUrl('http://intranet/hook', false)).toMatch(/fully qualified/);
    expect(checkWebhookUrl('http://receiver:8080/hook', true)).toBeNull();
  });

  it.each([
    'https://example.com/hooks/comfy?token=abc',
    'http://hooks.example.org:8080/x',
    'https://8.8.8.8/hook',
    'http://172.15.255.255/hook', // just below 172.16/12
    'http://172.32.0.1/hook', // just above
    'http://192.169.0.1/hook',
    'http://[2606:4700:4700::1111]/hook',
    'http://[::ffff:8.8.8.8]/hook',
  ])('allows the public target %s', (url) => {
    expect(checkWebhookUrl(url, false)).toBeNull();
  });
});

describe('nonPublicRange', () => {
  it('classifies addresses, not names', () => {
    expect(nonPublicRange('127.0.0.1')).toBe('loopback');
    expect(nonPublicRange('::1')).toBe('loopback');
    expect(nonPublicRange('fe80::abcd')).toBe('link-local');
    expect(nonPublicRange('1.1.1.1')).toBeNull();
    expect(nonPublicRange('example.com')).toBeNull();
  });
});

describe('checkWebhookTarget (submission time, with DNS)', () => {
  it('refuses a host that does not resolve (.invalid never does, RFC 6761)', async () => {
    expect(await checkWebhookTarget('https://hooks.nowhere.invalid/x', false)).toMatch(
      /does not resolve/,
    );
    expect(await checkWebhookTarget('https://hooks.nowhere.invalid/x', true)).toMatch(
      /does not resolve/,
    );
  });

  it('refuses a name that resolves to a private address, allows it with allowPrivate', async () => {
    const dns: LookupAll = (_host, _opts, cb) => cb(null, [{ address: '10.0.0.7', family: 4 }]);
    expect(await checkWebhookTarget('http://private.example.com/x', false, dns)).toMatch(
      /resolves to a private address \(10\.0\.0\.7\)/,
    );
    expect(await checkWebhookTarget('http://private.example.com/x', true, dns)).toBeNull();
  });

  it('literal public addresses need no DNS', async () => {
    expect(await checkWebhookTarget('https://8.8.8.8/x', false)).toBeNull();
  });
});

describe('guardedLookup (delivery time, after DNS)', () => {
  const fakeDns =
    (table: Record<string, LookupAddress[]>): LookupAll =>
    (host, _opts, cb) =>
      table[host]
        ? cb(null, table[host])
        : cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), []);
  const table = {
    'public.test': [{ address: '93.184.216.34', family: 4 }],
    'private.test': [{ address: '10.0.0.7', family: 4 }],
    'mixed.test': [
      { address: '93.184.216.34', family: 4 },
      { address: 'fd00::7', family: 6 },
    ],
  };
  const run = (allowPrivate: boolean, host: string, all: boolean) =>
    new Promise<{ err: Error | null; address: unknown; family?: number }>((resolve) =>
      (guardedLookup(allowPrivate, fakeDns(table)) as unknown as LookupAll)(
        host,
        { all } as never,
        (err, address, family?: number) => resolve({ err, address, family }),
      ),
    );

  it('passes public names through, in both callback shapes', async () => {
    expect(await run(false, 'public.test', false)).toEqual({
      err: null,
      address: '93.184.216.34',
      family: 4,
    });
    expect((await run(false, 'public.test', true)).address).toEqual(table['public.test']);
  });

  it('refuses a name with any non-public address', async () => {
    for (const host of ['private.test', 'mixed.test']) {
      const { err } = await run(false, host, true);
      expect(err).toBeInstanceOf(WebhookRefusedError);
      expect(err!.message).toContain(host);
    }
  });

  it('allows everything with allowPrivate, and passes DNS errors on', async () => {
    expect((await run(true, 'mixed.test', true)).err).toBeNull();
    expect((await run(false, 'nowhere.test', true)).err?.message).toMatch(/ENOTFOUND/);
  });
});
