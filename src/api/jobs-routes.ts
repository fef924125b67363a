import { pipeline } from 'node:stream/promises';
import { Router, type Request } from 'express';
import type { ComfyClient, ViewResponse } from '../comfy/client';
import { ComfyUnreachableError } from '../errors';
import type { JobData } from '../queue';
import type { Logger } from '../logger';
import { ApiError, notFound } from './errors';
import { toJobView, type JobView } from './job-view';
import { ownedBy, type JobStore } from './store';
import {
  createJobHandler,
  idempotencyKeyOf,
  rawJsonBody,
  requireJsonBody,
  type CreateJobDeps,
} from './create-job';
import type { BodyParser } from './parse-pool';
import { streamJobEvents, type JobEventHub } from './sse';

/** The /v1/jobs routes (DESIGN "HTTP API"). */

export interface JobsRouterDeps {
  store: JobStore;
  hub: JobEventHub;
  comfy: (baseUrl: string) => ComfyClient;
  log: Logger;
  sseHeartbeatMs: number;
  parser: BodyParser;
  /** extra webhookUrl policy (SSRF guard): the reason a URL is refused, or null */
  webhookUrlPolicy?: CreateJobDeps['webhookUrlPolicy'];
  /** the caller's API key name when keys are scoped (bearerAuth sets it) */
  ownerOf?: (req: Request) => string | undefined;
  admit?: CreateJobDeps['admit'];
}

export const JOBS_BASE = '/v1/jobs';
export function jobsRouter(deps: JobsRouterDeps): Router {
  const { store } = deps;
  const router = Router();
  const links = (id: string) => ({
    self: `${JOBS_BASE}/${encodeURIComponent(id)}`,
    events: `${JOBS_BASE}/${encodeURIComponent(id)}/events`,
  });
  const ownerOf = deps.ownerOf ?? (() => undefined);
  /** the snapshot if the caller may see the job (a scoped key sees only its own) */
  const readOwn = async (req: Request, id: string) => {
    const s = await store.read(id);
    return s && ownedBy(s, ownerOf(req)) ? s : null;
  };
  const viewer =
    (req: Request) =>
    async (id: string): Promise<JobView | null> => {
      const s = await readOwn(req, id);
      return s ? toJobView(s, JOBS_BASE) : null;
    };

  router.post('/', requireJsonBody, rawJsonBody, createJobHandler({ ...deps, links, ownerOf }));

  router.get('/:id', async (req, res) => {
    const view = await viewer(req)(req.params.id);
    if (!view) throw notFound(`job ${req.params.id.slice(0, 100)} not found`);
    res.json(view);
  });

  router.delete('/:id', async (req, res) => {
    const id = req.params.id;
    const key = idempotencyKeyOf(req, undefined);
    const r = await store.cancel(id, { idempotencyKey: key, owner: ownerOf(req) });
    if (r.outcome === 'not_found') throw notFound(`job ${id.slice(0, 100)} not found`);
    if (r.outcome === 'already_finished') {
      throw new ApiError(409, 'already_finished', `job ${id} is already ${r.status}`);
    }
    res.status(202).json({ id, status: 'cancelled' });
  });

  router.post('/:id/retry', async (req, res) => {
    const id = req.params.id;
    const r = await store.retry(id, { owner: ownerOf(req) });
    if (r.outcome === 'not_found') throw notFound(`job ${id.slice(0, 100)} not found`);
    if (r.outcome !== 'retried')
      throw new ApiError(409, r.outcome, `job ${id} is ${r.status}: only a failed job is retried`);
    res.status(202).location(links(id).self).json(toJobView(r.snapshot, JOBS_BASE));
  });

  router.get('/:id/events', async (req, res) => {
    await streamJobEvents(req, res, req.params.id, {
      hub: deps.hub,
      readView: viewer(req),
      heartbeatMs: deps.sseHeartbeatMs,
      log: deps.log,
    });
  });

  router.get('/:id/outputs/:n', async (req, res) => {
    const { id, n } = req.params;
    const s = /^\d{1,6}$/.test(n) ? await readOwn(req, id) : null;
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
