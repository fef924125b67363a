import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { createFileStorage } from '../src/storage/file';
import { parseStorageUrl } from '../src/storage';
import { createS3Storage } from '../src/storage/s3';
import type { Storage } from '../src/storage/types';
import { startS3Server, type S3TestServer } from './helpers/s3-server';

/** The same behaviour from both drivers: file:// on a temp dir, s3:// on a real S3 server. */

async function bytes(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A stream of `n` pseudo-random bytes, produced in chunks (never one buffer). */
function generated(n: number, seed = 1): Readable {
  let left = n;
  let x = seed;
  return new Readable({
    read() {
      if (left === 0) return this.push(null);
      const size = Math.min(left, 256 * 1024);
      const b = Buffer.allocUnsafe(size);
      for (let i = 0; i < size; i++) b[i] = (x = (x * 1103515245 + 12345) & 0x7fffffff) >> 16;
      left -= size;
      this.push(b);
    },
  });
}

let s3: S3TestServer;
let dir: string;
beforeAll(async () => {
  s3 = await startS3Server();
  dir = mkdtempSync(join(tmpdir(), 'cq-files-'));
});
afterAll(async () => {
  await s3?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const drivers: Array<[string, () => Storage]> = [
  ['file', () => createFileStorage(dir)],
  ['s3', () => createS3Storage(s3.settings('pre/fix'))],
];

describe.each(drivers)('%s storage', (_name, make) => {
  let storage: Storage;
  beforeAll(() => (storage = make()));
  afterAll(() => storage.close());

  it('puts a stream larger than a multipart part and gets it back byte for byte', async () => {
    const n = 9 * 1024 * 1024 + 123;
    const expected = createHash('sha256')
      .update(await bytes(generated(n)))
      .digest('hex');
    const put = await storage.put('jobs/1/outputs/0', generated(n), { contentType: 'image/png' });
    expect(put.size).toBe(n);
    const head = await storage.head('jobs/1/outputs/0');
    expect(head?.size).toBe(n);
    const got = await storage.get('jobs/1/outputs/0');
    expect(got?.size).toBe(n);
    const hash = createHash('sha256');
    for await (const c of got!.body) hash.update(c as Buffer);
    expect(hash.digest('hex')).toBe(expected);
  });

  it('serves a byte range', async () => {
    await storage.put('jobs/2/outputs/0', Readable.from([Buffer.from('0123456789abcdef')]));
    const got = await storage.get('jobs/2/outputs/0', { range: { start: 3, end: 7 } });
    expect(got?.size).toBe(16);
    expect(got?.range).toEqual({ start: 3, end: 7 });
    expect(await text(got!.body)).toBe('34567');
  });

  it('replaces an object on a second put under the same key', async () => {
    await storage.put('jobs/3/outputs/0', Readable.from([Buffer.from('first copy')]));
    await storage.put('jobs/3/outputs/0', Readable.from([Buffer.from('second')]));
    expect(await text((await storage.get('jobs/3/outputs/0'))!.body)).toBe('second');
    const listing = await storage.list('jobs/3/');
    expect(listing.map((o) => [o.key, o.size])).toEqual([['jobs/3/outputs/0', 6]]);
  });

  it('answers null for a missing object and deletes without error', async () => {
    expect(await storage.get('jobs/none/outputs/0')).toBeNull();
    expect(await storage.head('jobs/none/outputs/0')).toBeNull();
    await storage.delete('jobs/none/outputs/0');
  });

  it('keeps nothing of a put whose source fails', async () => {
    const failing = new Readable({ read() {} });
    const put = storage.put('jobs/4/outputs/0', failing);
    failing.push(Buffer.alloc(1024, 1));
    setImmediate(() => failing.destroy(new Error('source broke')));
    await expect(put).rejects.toThrow('source broke');
    expect(await storage.head('jobs/4/outputs/0')).toBeNull();
    expect(await storage.list('jobs/4/')).toEqual([]);
  });

  it('lists by prefix and deletes by prefix (retention)', async () => {
    await storage.put('jobs/10/outputs/0', Readable.from([Buffer.from('a')]));
    await storage.put('jobs/10/outputs/1', Readable.from([Buffer.from('b')]));
    await storage.put('jobs/11/outputs/0', Readable.from([Buffer.from('c')]));
    const keys = (await storage.list('jobs/1')).map((o) => o.key);
    expect(keys).toEqual(expect.arrayContaining(['jobs/10/outputs/1', 'jobs/11/outputs/0']));
    expect(keys).not.toContain('jobs/2/outputs/0');
    expect(await storage.deletePrefix('jobs/10/')).toBe(2);
    expect(await storage.head('jobs/10/outputs/0')).toBeNull();
    expect(await storage.head('jobs/11/outputs/0')).not.toBeNull();
  });

  it('refuses keys that leave its root', async () => {
    await expect(storage.put('../x', Readable.from([]))).rejects.toThrow('invalid storage key');
    await expect(storage.get('a//b')).rejects.toThrow('invalid storage key');
  });
});

describe('s3 presigned GET', () => {
  it('is fetched over plain HTTP without credentials, with the asked content type', async () => {
    const storage = createS3Storage(s3.settings());
    try {
      await storage.put('jobs/20/outputs/0', Readable.from([Buffer.from('presigned bytes')]), {
        contentType: 'image/png',
      });
      const url = await storage.presignGet!('jobs/20/outputs/0', 60, {
        filename: 'out.png',
        contentType: 'image/png',
      });
      expect(url.startsWith(`${s3.endpoint}/${s3.bucket}/jobs/20/outputs/0?`)).toBe(true);
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect(await res.text()).toBe('presigned bytes');
      // s3rver does not check signatures: the URL's shape is what can be checked here
      const q = new URL(url).searchParams;
      expect(q.get('X-Amz-Expires')).toBe('60');
      expect(q.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      expect(q.get('response-content-disposition')).toBe('inline; filename="out.png"');
    } finally {
      await storage.close();
    }
  });
});

describe('STORAGE_URL', () => {
  it('parses file:// and s3:// and names the variable when wrong', () => {
    expect(parseStorageUrl('file://./.data/files')).toEqual({
      kind: 'file',
      dir: join(process.cwd(), '.data/files'),
    });
    expect(parseStorageUrl('s3://media/a/b/')).toEqual({
      kind: 's3',
      bucket: 'media',
      prefix: 'a/b',
    });
    expect(() => parseStorageUrl('gs://x')).toThrow('STORAGE_URL');
    expect(() => parseStorageUrl('s3://')).toThrow('STORAGE_URL');
  });
});
