import path from 'node:path';
import { ConfigError } from '../errors';
import { createFileStorage } from './file';
import { createS3Storage, type S3Settings } from './s3';
import type { Storage } from './types';

export type { ByteRange, ObjectInfo, Storage, StoredObject } from './types';

/** What STORAGE_URL says (DESIGN "Media out": `file://<dir>` or `s3://<bucket>[/<prefix>]`). */
export type StorageTarget =
  { kind: 'file'; dir: string } | { kind: 's3'; bucket: string; prefix: string };

export const DEFAULT_STORAGE_URL = 'file://./.data/files';

/** Parses STORAGE_URL; a ConfigError names the variable. `file://./x` is relative to the cwd. */
export function parseStorageUrl(url: string): StorageTarget {
  const m = /^(file|s3):\/\/(.*)$/.exec(url.trim());
  if (!m)
    throw new ConfigError(
      `STORAGE_URL must be file://<dir> or s3://<bucket>[/<prefix>], got "${url}"`,
    );
  if (m[1] === 'file') {
    if (m[2] === '') throw new ConfigError('STORAGE_URL file:// needs a directory');
    return { kind: 'file', dir: path.resolve(decodeURIComponent(m[2])) };
  }
  const [bucket, ...rest] = m[2].split('/');
  if (!/^[a-z0-9][a-z0-9.-]{1,62}$/.test(bucket)) {
    throw new ConfigError(`STORAGE_URL s3:// needs a valid bucket name, got "${bucket}"`);
  }
  return { kind: 's3', bucket, prefix: rest.filter(Boolean).join('/') };
}

/** The storage driver for a target; S3 endpoint, region and credentials come from `s3`. */
export function createStorage(
  target: StorageTarget,
  s3: Omit<S3Settings, 'bucket' | 'prefix'> = {},
): Storage {
  if (target.kind === 'file') return createFileStorage(target.dir);
  return createS3Storage({ ...s3, bucket: target.bucket, prefix: target.prefix });
}
