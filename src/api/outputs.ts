import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import type { Logger } from '../logger';
import type { Storage } from '../storage/types';
import { ApiError, notFound } from './errors';
import { outputsOf, publicStatus, type JobSnapshot, type JobView } from '../job/view';
import { storageError } from './uploads-routes';

/**
 * GET /v1/jobs/:id/outputs/:n (DESIGN "Media out"): the stored copy of the n-th output,
 * never ComfyUI's, with Content-Type, Content-Length and a single `Range` (206, or 416).
 */

export interface OutputRequest {
  /** the job, if it exists and the caller may see it */
  snapshot: JobSnapshot | null;
  id: string;
  n: string;
  storage: Storage;
  log: Logger;
}

/** Answers the stored output (200, 206 for one range, 416), or throws a 404 / 503. */
export async function serveOutput(req: Request, res: Response, o: OutputRequest): Promise<void> {
  const { snapshot: s, id, n, storage } = o;
  const output = s && publicStatus(s) === 'completed' ? outputsOf(s)?.[Number(n)] : undefined;
  if (!output) throw notFound(`job ${id.slice(0, 100)} has no output ${n.slice(0, 10)}`);
  if (!output.key) throw notFound(`output ${n} of job ${id} was never copied to storage`);
  const failed = (err: unknown) => Promise.reject(storageError(err, o.log));
  const info = await storage.head(output.key).catch(failed);
  if (!info) throw notFound(`output ${n} of job ${id} is no longer in storage`);

  const ranges = req.range(info.size, { combine: true });
  if (ranges === -1) {
    throw new ApiError(
      416,
      'range_not_satisfiable',
      `the range is outside the file (${info.size} bytes)`,
      undefined,
      { 'Content-Range': `bytes */${info.size}` },
    );
  }
  // one range is served as 206; several (rare) or a malformed header: the whole file
  const range = Array.isArray(ranges) && ranges.length === 1 ? ranges[0] : undefined;
  const got = await storage.get(output.key, { range }).catch(failed);
  if (!got) throw notFound(`output ${n} of job ${id} is no longer in storage`);

  res.status(range ? 206 : 200);
  res.setHeader(
    'Content-Type',
    output.contentType ?? info.contentType ?? 'application/octet-stream',
  );
  res.setHeader('Content-Length', range ? range.end - range.start + 1 : info.size);
  res.setHeader('Accept-Ranges', 'bytes');
  if (range) res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${info.size}`);
  res.setHeader('Content-Disposition', `inline; filename="${safeName(output.filename)}"`);
  if (req.method === 'HEAD') {
    got.body.destroy();
    res.end();
    return;
  }
  try {
    await pipeline(got.body, res);
  } catch (err) {
    // the client went away, or storage broke off mid-file: nothing left to answer
    o.log.debug(
      { jobId: id, err: err instanceof Error ? err.message : String(err) },
      'output stream ended early',
    );
  }
}

const safeName = (filename: string) => String(filename).replace(/[^\w.-]/g, '_');

/**
 * With s3:// storage and OUTPUT_URL_TTL_S > 0: each output of a completed job gains a
 * presigned `downloadUrl` (signing is local: no request to the store).
 */
export function presignedViews(storage: Storage, ttlS: number) {
  if (!storage.presignGet || ttlS <= 0) return undefined;
  const presign = storage.presignGet.bind(storage);
  return async (view: JobView, s: JobSnapshot): Promise<JobView> => {
    const stored = outputsOf(s);
    if (!view.outputs || !stored) return view;
    const outputs = await Promise.all(
      view.outputs.map(async (o, n) => {
        const key = stored[n]?.key;
        if (!key) return o;
        const downloadUrl = await presign(key, ttlS, {
          filename: safeName(o.filename),
          contentType: o.contentType,
        });
        return { ...o, downloadUrl };
      }),
    );
    return { ...view, outputs };
  };
}
