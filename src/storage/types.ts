import type { Readable } from 'node:stream';

/**
 * Object storage for input files and job outputs (DESIGN "Media in", "Media out"): one
 * interface, two drivers (`file://` and `s3://`). Bodies are streams both ways: a large
 * output never sits in memory. Keys are `/`-separated paths chosen by this project
 * (`uploads/…`, `jobs/…`), never by a client.
 */

export interface ObjectInfo {
  /** the whole object's size in bytes */
  size: number;
  contentType?: string;
  lastModified?: Date;
}

/** An inclusive byte range, as in HTTP `Range: bytes=start-end`. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface StoredObject extends ObjectInfo {
  /** the whole object, or only `range` when one was asked for */
  body: Readable;
  range?: ByteRange;
}

export interface ListEntry {
  key: string;
  size: number;
  lastModified: Date;
}

export interface PutOptions {
  contentType?: string;
  /** aborts the write; nothing is left under the key */
  signal?: AbortSignal;
}

export interface Storage {
  readonly kind: 'file' | 's3';
  /** Stores the stream under `key` (replacing any object there); resolves once it is durable. */
  put(key: string, body: Readable, opts?: PutOptions): Promise<{ size: number }>;
  /** The object (or a range of it), or null when there is none. */
  get(key: string, opts?: { range?: ByteRange }): Promise<StoredObject | null>;
  head(key: string): Promise<ObjectInfo | null>;
  /** Removes the object; no error when there is none. */
  delete(key: string): Promise<void>;
  /** Removes every object whose key starts with `prefix`; resolves to how many. */
  deletePrefix(prefix: string): Promise<number>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string): Promise<ListEntry[]>;
  /** A time-limited GET URL a browser can use without the API (s3 only). */
  presignGet?(
    key: string,
    ttlS: number,
    opts?: { filename?: string; contentType?: string },
  ): Promise<string>;
  close(): Promise<void>;
}

/** A key must be a relative path of safe segments: what a driver refuses to touch otherwise. */
export function checkKey(key: string): string {
  if (
    key === '' ||
    key.startsWith('/') ||
    key.split('/').some((s) => s === '' || s === '.' || s === '..') ||
    /[\\\0]/.test(key)
  ) {
    throw new Error(`invalid storage key "${key.slice(0, 100)}"`);
  }
  return key;
}
