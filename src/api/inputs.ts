import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Config } from '../config';
import { contentTypeOf } from '../storage/content-type';
import { keys, readUpload, saveUpload } from '../storage/media';
import type { Storage } from '../storage/types';
import { checkWebhookUrl } from '../webhooks/url-policy';
import type { FieldIssue } from './errors';
import type { InputsBody } from './input-schema';
import type { JobInput } from '../job/data';

/**
 * `inputs` of POST /v1/jobs (DESIGN "Media in"), after input-schema.ts: `resolveInputs`
 * checks them against the URL policy and storage, and turns each into what the job keeps
 * (base64 becomes an upload).
 */

export interface ResolveOptions {
  storage: Storage;
  allowPrivateUrls: boolean;
  /** the largest file (UPLOAD_MAX_BYTES) */
  maxBytes: number;
  /** the caller's scoped key name: only its own uploads exist for it (undefined: admin) */
  owner?: string;
}

const DATA_URI = /^data:([\w.+-]+\/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The bytes and media type of a base64 value (plain or a data: URI), or a problem. */
export function decodeBase64(value: string): { bytes: Buffer; contentType?: string } | string {
  const m = DATA_URI.exec(value);
  const payload = (m ? value.slice(m[0].length) : value).replace(/\s+/g, '');
  if (payload.length === 0 || payload.length % 4 !== 0 || !BASE64.test(payload)) {
    return 'base64 must be base64 (or a data: URI with ;base64,) of a non-empty file';
  }
  return { bytes: Buffer.from(payload, 'base64'), contentType: m?.[1] };
}

/**
 * Checks every input (URL policy, uploads that exist, base64 that decodes; the names were
 * checked against the workflow before) and returns what the job keeps, or the problems,
 * each at its path. Base64 inputs are stored as uploads only once everything else passed.
 */
export async function resolveInputs(
  body: InputsBody,
  opts: ResolveOptions,
): Promise<{ inputs: JobInput[]; created: string[] } | { issues: FieldIssue[] }> {
  const issues: FieldIssue[] = [];
  const found: Array<JobInput | { name: string; bytes: Buffer; contentType?: string }> = [];
  for (const [name, input] of Object.entries(body)) {
    const at = `inputs.${name}`;
    if (input.url !== undefined) {
      const refused = checkWebhookUrl(
        input.url,
        opts.allowPrivateUrls,
        'url',
        'INPUT_URL_ALLOW_PRIVATE',
      );
      if (refused) issues.push({ path: `${at}.url`, message: refused });
      else found.push({ name, url: input.url });
    } else if (input.upload !== undefined) {
      const record = await readUpload(opts.storage, input.upload);
      if (!record || !uploadOwnedBy(record, opts.owner)) {
        issues.push({ path: `${at}.upload`, message: `no upload ${input.upload.slice(0, 100)}` });
      } else found.push(uploadInput(name, record));
    } else {
      const decoded = decodeBase64(input.base64 ?? '');
      if (typeof decoded === 'string') issues.push({ path: `${at}.base64`, message: decoded });
      else if (decoded.bytes.length > opts.maxBytes) {
        issues.push({ path: `${at}.base64`, message: `larger than ${opts.maxBytes} bytes` });
      } else found.push({ name, ...decoded });
    }
  }
  if (issues.length > 0) return { issues };
  const inputs: JobInput[] = [];
  const created: string[] = [];
  for (const f of found) {
    if (!('bytes' in f)) {
      inputs.push(f);
      continue;
    }
    const record = await saveUpload(opts.storage, Readable.from([f.bytes]), {
      filename: f.name,
      contentType: f.contentType ?? contentTypeOf(f.name),
      maxBytes: opts.maxBytes,
      owner: opts.owner,
    }).catch(async (err: unknown) => {
      // a storage failure answers 503: the inputs stored before it go too (best effort)
      await Promise.allSettled(created.map((id) => opts.storage.deletePrefix(`uploads/${id}/`)));
      throw err;
    });
    created.push(record.id);
    inputs.push(uploadInput(f.name, record));
  }
  return { inputs, created };
}

/** A scoped key uses only the uploads it made; an admin key (owner undefined) any. */
export function uploadOwnedBy(record: { owner?: string }, owner: string | undefined): boolean {
  return owner === undefined || record.owner === owner;
}

function uploadInput(
  name: string,
  r: { id: string; size: number; sha256: string; contentType: string },
): JobInput {
  return { name, upload: r.id, size: r.size, sha256: r.sha256, contentType: r.contentType };
}

/**
 * Marks the uploads a job uses (retention keeps them while the job exists). `pending()`
 * goes before the job is added and `commit(jobId)` after: a crash between them leaves a
 * pending mark, which keeps the upload for a while (PENDING_REF_MS), then expires.
 * `discard()` when the job was certainly not added (refused, or an idempotent replay):
 * the marks go, and so do the uploads this request made from base64 (`created`), so a
 * refused request leaves nothing in storage.
 */
export function uploadRefs(storage: Storage, inputs: readonly JobInput[], created: string[]) {
  const ids = [...new Set(inputs.flatMap((i) => ('upload' in i ? [i.upload] : [])))];
  const mark = `pending.${randomUUID()}`;
  const put = (key: string) => storage.put(key, Readable.from([]));
  return {
    pending: () => Promise.all(ids.map((id) => put(keys.uploadRef(id, mark)))),
    commit: async (jobId: string) => {
      await Promise.all(ids.map((id) => put(keys.uploadRef(id, jobId))));
      await Promise.all(ids.map((id) => storage.delete(keys.uploadRef(id, mark))));
    },
    discard: async () => {
      await Promise.all(created.map((id) => storage.deletePrefix(`uploads/${id}/`)));
      const kept = ids.filter((id) => !created.includes(id));
      await Promise.all(kept.map((id) => storage.delete(keys.uploadRef(id, mark))));
    },
  };
}

/** What the API needs for media (DESIGN "Media in", "Media out"). */
export interface MediaSettings {
  storage: Storage;
  uploadMaxBytes: number;
  inputUrlAllowPrivate: boolean;
  /** the API's public address: output URLs become absolute */
  publicUrl?: string;
  /** presigned `downloadUrl` lifetime (s3 only; 0: none) */
  outputUrlTtlS: number;
}

export function mediaSettings(
  config: Pick<Config, 'uploadMaxBytes' | 'inputUrlAllowPrivate' | 'publicUrl' | 'outputUrlTtlS'>,
  storage: Storage,
): MediaSettings {
  return {
    storage,
    uploadMaxBytes: config.uploadMaxBytes,
    inputUrlAllowPrivate: config.inputUrlAllowPrivate,
    publicUrl: config.publicUrl,
    outputUrlTtlS: config.outputUrlTtlS,
  };
}

export interface PreparedInputs {
  inputs?: JobInput[];
  /** the job exists: its uploads are kept while it does */
  commit(jobId: string): Promise<void>;
  /** no job was added: what this request stored goes */
  discard(): Promise<void>;
}

/**
 * The inputs of a job request, checked and stored: `inputs` for the job data, and
 * `commit(jobId)` to call once the job exists, or `discard()` once it is certain that it
 * was not added. Problems come back as field issues.
 */
export async function prepareInputs(
  media: MediaSettings | undefined,
  body: InputsBody | undefined,
  owner?: string,
): Promise<PreparedInputs | { issues: FieldIssue[] }> {
  if (!body) return { commit: async () => {}, discard: async () => {} };
  if (!media) return { issues: [{ path: 'inputs', message: 'this API has no file storage' }] };
  const r = await resolveInputs(body, {
    storage: media.storage,
    allowPrivateUrls: media.inputUrlAllowPrivate,
    maxBytes: media.uploadMaxBytes,
    owner,
  });
  if ('issues' in r) return r;
  const refs = uploadRefs(media.storage, r.inputs, r.created);
  await refs.pending();
  return { inputs: r.inputs, commit: refs.commit, discard: refs.discard };
}
