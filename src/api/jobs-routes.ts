import { pipeline } from 'node:stream/promises';
import express, { Router, type RequestHandler } from 'express';
import type { ComfyClient, ViewResponse } from '../comfy/client';
import { ComfyUnreachableError } from '../errors';
import type { JobData } from '../queue';
import type { Logger } from '../logger';
import { ApiError, notFound } from './errors';
import { toJobView, type JobView } from './job-view';
import { CreateJobSchema, LIMITS, jsonDepthExceeds, toFieldIssues } from './schemas';
import { streamJobEvents, type JobEventHub } from './sse';
import type { JobStore } from './store';

/** The /v1/jobs routes (DESIGN "HTTP API"). */

export interface JobsRouterDeps {
  store: JobStore;
  hub: JobEventHub;
  comfy: (baseUrl: string) => ComfyClient;
  log: Logger;
  sseHeartbeatMs: number;
  /** extra webhookUrl policy (SSRF guard): the reason a URL is refused, or null */
  webhookUrlPolicy?: (url: string) => string | null | undefined;
}

export const JOBS_BASE = '/v1/jobs';
const JSON_TYPES = ['application/json', 'application/*+json'];

const invalid = (
  details: { path: string; message: string }[],
  message = 'the request is invalid',
) => new ApiError(400, 'invalid_request', message, details);

/** 400 without a body, 415 for a body that is not JSON, before anything is read. */
const requireJsonBody: RequestHandler = (req, _res, next) => {
  const length = req.headers['content-length'];
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (!hasBody) return next(invalid([{ path: '', message: 'a JSON body is required' }]));
  if (!req.is(JSON_TYPES)) {
    return next(
      new ApiError(
        415,
        'unsupported_media_type',
        'the body must be JSON (Content-Type: application/json)',
      ),
    );
  }
  next();
};

const jsonParser = express.json({ limit: LIMITS.bodyBytes, strict: false, type: JSON_TYPES });

export function jobsRouter(deps: JobsRouterDeps): Router {
  const { store } = deps;
  const router = Router();
  const links = (id: string) => ({
    self: `${JOBS_BASE}/${encodeURIComponent(id)}`,
    events: `${JOBS_BASE}/${encodeURIComponent(id)}/events`,
  });
  const readView = async (id: string): Promise<JobView | null> => {
    const s = await store.read(id);
    return s ? toJobView(s, JOBS_BASE) : null;
  };

  router.post('/', requireJsonBody, jsonParser, async (req, res) => {
    const body: unknown = req.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw invalid([{ path: '', message: 'the body must be a JSON object' }]);
    }
    if (jsonDepthExceeds(body, LIMITS.jsonDepth)) {
      throw invalid([
        { path: '', message: `the body is nested deeper than ${LIMITS.jsonDepth} levels` },
      ]);
    }
    const parsed = CreateJobSchema.safeParse(body);
    if (!parsed.success) throw invalid(toFieldIssues(parsed.error.issues));
    const refused = parsed.data.webhookUrl && deps.webhookUrlPolicy?.(parsed.data.webhookUrl);
    if (refused) throw invalid([{ path: 'webhookUrl', message: refused }]);
    const r = await store.enqueue(parsed.data);
    res
      .status(r.created ? 202 : 200)
      .location(links(r.id).self)
      .json({ id: r.id, status: r.status, links: links(r.id) });
  });

  router.get('/:id', async (req, res) => {
    const view = await readView(req.params.id);
    if (!view) throw notFound(`job ${req.params.id.slice(0, 100)} not found`);
    res.json(view);
  });

  router.delete('/:id', async (req, res) => {
    const id = req.params.id;
    const r = await store.cancel(id);
    if (r.outcome === 'not_found') throw notFound(`job ${id.slice(0, 100)} not found`);
    if (r.outcome === 'already_finished') {
      throw new ApiError(409, 'already_finished', `job ${id} is already ${r.status}`);
    }
    res.status(202).json({ id, status: 'cancelled' });
  });

  router.get('/:id/events', async (req, res) => {
    await streamJobEvents(req, res, req.params.id, {
      hub: deps.hub,
      readView,
      heartbeatMs: deps.sseHeartbeatMs,
      log: deps.log,
    });
  });

  router.get('/:id/outputs/:n', async (req, res) => {
    const { id, n } = req.params;
    const s = /^\d{1,6}$/.test(n) ? await store.read(id) : null;
    const output = s ? toJobView(s, JOBS_BASE).outputs?.[Number(n)] : undefined;
    const comfyuiUrl = (s?.data as Partial<JobData> | undefined)?.state?.comfyuiUrl;
    if (!output || !comfyuiUrl)
      throw notFound(`job ${id.slice(0, 100)} has no output ${n.slice(0, 10)}`);

    let upstream: ViewResponse;
    try {
      upstream = await deps.comfy(comfyuiUrl).view(output);
    } catch (err) {
      if (err instanceof ComfyUnreachableError) {
        throw new ApiError(
          502,
          'comfyui_unreachable',
          'the ComfyUI instance that made this file did not answer',
        );
      }
      throw err;
    }
    if (upstream.status === 404) {
      upstream.body.destroy();
      throw notFound(`output ${n} of job ${id} is no longer on its ComfyUI instance`);
    }
    if (upstream.status < 200 || upstream.status >= 300) {
      upstream.body.destroy();
      throw new ApiError(
        502,
        'comfyui_unreachable',
        `ComfyUI answered ${upstream.status} for this file`,
      );
    }
    res.status(200);
    res.setHeader('Content-Type', upstream.contentType ?? 'application/octet-stream');
    if (upstream.contentLength) res.setHeader('Content-Length', upstream.contentLength);
    const safeName = output.filename.replace(/[^\w.-]/g, '_');
    res.setHeader('Content-Disposition', `inline; filename="${safeName}"`);
    try {
      await pipeline(upstream.body, res);
    } catch (err) {
      // the client went away, or ComfyUI broke off: nothing left to answer
      deps.log.debug(
        { jobId: id, err: err instanceof Error ? err.message : String(err) },
        'output stream ended early',
      );
    }
  });

  return router;
}
