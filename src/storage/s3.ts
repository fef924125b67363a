import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  checkKey,
  type ByteRange,
  type ListEntry,
  type ObjectInfo,
  type PutOptions,
  type Storage,
  type StoredObject,
} from './types';

/**
 * `s3://<bucket>[/<prefix>]` on any S3-compatible store (AWS S3, Cloudflare R2, MinIO,
 * Tigris). Endpoint, region and credentials come from the standard AWS variables (the
 * SDK's default chain), passed in by the entry file. Puts stream as a multipart upload
 * (parts of PART_BYTES, QUEUE_SIZE in flight: memory stays bounded whatever the size).
 */

export interface S3Settings {
  bucket: string;
  /** key prefix inside the bucket, without leading or trailing `/` ('' for none) */
  prefix: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** explicit credentials (tests); otherwise the SDK's default provider chain */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

const PART_BYTES = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
const DELETE_CONCURRENCY = 8;

const notFound = (err: unknown) =>
  err instanceof S3ServiceException &&
  (err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata.httpStatusCode === 404);

/** The bucket as one storage sees it: keys are relative to the prefix. */
interface Bucket {
  client: S3Client;
  name: string;
  /** the object key of a storage key */
  full(key: string): string;
  /** the object key prefix of a storage prefix */
  fullPrefix(prefix: string): string;
  /** the storage key of an object key */
  strip(key: string): string;
}

async function listObjects(b: Bucket, prefix: string): Promise<ListEntry[]> {
  const out: ListEntry[] = [];
  let token: string | undefined;
  do {
    const page = await b.client.send(
      new ListObjectsV2Command({
        Bucket: b.name,
        Prefix: b.fullPrefix(prefix),
        ContinuationToken: token,
      }),
    );
    for (const o of page.Contents ?? []) {
      if (!o.Key) continue;
      out.push({
        key: b.strip(o.Key),
        size: o.Size ?? 0,
        lastModified: o.LastModified ?? new Date(0),
      });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** A streaming multipart upload; a failing source fails it with the source's own error. */
async function putObject(
  b: Bucket,
  key: string,
  body: Readable,
  opts: PutOptions,
): Promise<{ size: number }> {
  body.on('error', () => {}); // reported by the pipeline below, never as an unhandled event
  let size = 0;
  const counting = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      cb(null, chunk);
    },
  });
  const upload = new Upload({
    client: b.client,
    params: { Bucket: b.name, Key: b.full(key), Body: counting, ContentType: opts.contentType },
    partSize: PART_BYTES,
    queueSize: QUEUE_SIZE,
    leavePartsOnError: false,
  });
  const abort = () => void upload.abort().catch(() => {});
  opts.signal?.addEventListener('abort', abort, { once: true });
  const piped = pipeline(body, counting);
  piped.catch(abort);
  try {
    await upload.done();
    await piped;
    return { size };
  } catch (err) {
    await piped;
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', abort);
  }
}

async function getObject(b: Bucket, key: string, range?: ByteRange): Promise<StoredObject | null> {
  try {
    const r = await b.client.send(
      new GetObjectCommand({
        Bucket: b.name,
        Key: b.full(key),
        Range: range ? `bytes=${range.start}-${range.end}` : undefined,
      }),
    );
    const total = /\/(\d+)$/.exec(r.ContentRange ?? '')?.[1];
    return {
      body: r.Body as Readable,
      size: total ? Number(total) : (r.ContentLength ?? 0),
      contentType: r.ContentType,
      lastModified: r.LastModified,
      range,
    };
  } catch (err) {
    if (notFound(err)) return null;
    throw err;
  }
}

async function headObject(b: Bucket, key: string): Promise<ObjectInfo | null> {
  try {
    const r = await b.client.send(new HeadObjectCommand({ Bucket: b.name, Key: b.full(key) }));
    return { size: r.ContentLength ?? 0, contentType: r.ContentType, lastModified: r.LastModified };
  } catch (err) {
    if (notFound(err)) return null;
    throw err;
  }
}

export function createS3Storage(s: S3Settings): Storage {
  const client = new S3Client({
    endpoint: s.endpoint,
    region: s.region ?? 'auto',
    forcePathStyle: s.forcePathStyle,
    credentials: s.credentials,
    // stores other than AWS (R2, Tigris, MinIO) do not all accept the newer default checksums
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const b: Bucket = {
    client,
    name: s.bucket,
    full: (key) => (s.prefix ? `${s.prefix}/${checkKey(key)}` : checkKey(key)),
    fullPrefix: (prefix) => (s.prefix ? `${s.prefix}/${prefix}` : prefix),
    strip: (key) => (s.prefix ? key.slice(s.prefix.length + 1) : key),
  };
  const { full } = b;
  const Bucket = b.name;
  const list = (prefix: string) => listObjects(b, prefix);

  return {
    kind: 's3',

    put: (key, body, opts = {}) => putObject(b, key, body, opts),
    get: (key, opts = {}) => getObject(b, key, opts.range),
    head: (key) => headObject(b, key),

    async delete(key) {
      await client.send(new DeleteObjectCommand({ Bucket, Key: full(key) }));
    },

    async deletePrefix(prefix) {
      const objects = await list(prefix);
      for (let i = 0; i < objects.length; i += DELETE_CONCURRENCY) {
        await Promise.all(
          objects
            .slice(i, i + DELETE_CONCURRENCY)
            .map((o) => client.send(new DeleteObjectCommand({ Bucket, Key: full(o.key) }))),
        );
      }
      return objects.length;
    },

    list,

    presignGet(key, ttlS, opts = {}) {
      const name = opts.filename?.replace(/[^\w.-]/g, '_');
      return getSignedUrl(
        client,
        new GetObjectCommand({
          Bucket,
          Key: full(key),
          ResponseContentType: opts.contentType,
          ResponseContentDisposition: name ? `inline; filename="${name}"` : undefined,
        }),
        { expiresIn: ttlS },
      );
    },

    async close() {
      client.destroy();
    },
  };
}
