import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { DEFAULT_CONTENT_TYPE } from './content-type';
import { meter } from './meter';
import type { Storage } from './types';

/**
 * Where media lives in storage, and the upload records (DESIGN "Media in", "Media out").
 *   uploads/<id>/data        the uploaded bytes
 *   uploads/<id>/meta.json   { id, filename, size, sha256, contentType, createdAt, owner? }
 *   uploads/<id>/refs/<job>  one empty object per job that uses the upload
 *   jobs/<job>/inputs/<i>    a URL input, fetched once by the worker
 *   jobs/<job>/outputs/<n>   the n-th output, copied from ComfyUI before the job completes
 * Every key of a job is under `jobs/<job>/`, so retention removes them with one prefix.
 */

export interface UploadRecord {
  id: string;
  filename: string;
  size: number;
  sha256: string;
  contentType: string;
  createdAt: string;
  /** the scoped API key's name that uploaded it: only that key's jobs may use it */
  owner?: string;
}

export const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const keys = {
  uploadData: (id: string) => `uploads/${id}/data`,
  uploadMeta: (id: string) => `uploads/${id}/meta.json`,
  uploadRef: (id: string, jobId: string) => `uploads/${id}/refs/${jobId}`,
  job: (jobId: string) => `jobs/${jobId}/`,
  input: (jobId: string, index: number) => `jobs/${jobId}/inputs/${index}`,
  output: (jobId: string, index: number) => `jobs/${jobId}/outputs/${index}`,
};

/**
 * Streams `body` to storage as a new upload, hashing and counting on the way (TooLargeError
 * past `maxBytes`, and nothing kept), then writes its record. Resolves to the record.
 */
export async function saveUpload(
  storage: Storage,
  body: Readable,
  file: {
    filename: string;
    contentType?: string;
    maxBytes: number;
    signal?: AbortSignal;
    owner?: string;
  },
): Promise<UploadRecord> {
  const id = randomUUID();
  const m = meter(file.maxBytes);
  const contentType = file.contentType || DEFAULT_CONTENT_TYPE;
  const metered = pipeline(body, m.stream).catch((err: unknown) => {
    m.stream.destroy(err as Error);
    throw err;
  });
  metered.catch(() => {});
  await storage.put(keys.uploadData(id), m.stream, { contentType, signal: file.signal });
  await metered;
  const record: UploadRecord = {
    id,
    filename: file.filename,
    size: m.size,
    sha256: m.sha256(),
    contentType,
    createdAt: new Date().toISOString(),
    ...(file.owner === undefined ? {} : { owner: file.owner }),
  };
  await storage.put(keys.uploadMeta(id), Readable.from([JSON.stringify(record)]), {
    contentType: 'application/json',
  });
  return record;
}

/** The record of an upload, or null when there is none (never uploaded, or removed). */
export async function readUpload(storage: Storage, id: string): Promise<UploadRecord | null> {
  if (!UPLOAD_ID.test(id)) return null;
  const got = await storage.get(keys.uploadMeta(id));
  if (!got) return null;
  return JSON.parse(await text(got.body)) as UploadRecord;
}

/** Marks the upload as used by a job: retention keeps it while the job exists. */
export async function refUpload(storage: Storage, id: string, jobId: string): Promise<void> {
  await storage.put(keys.uploadRef(id, jobId), Readable.from([]));
}
