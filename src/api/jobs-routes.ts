import { Router, type Request } from 'express';
import type { ComfyClient } from '../comfy/client';
import type { Logger } from '../logger';
import { ApiError, notFound } from './errors';
import { JOBS_BASE, toJobView, type JobSnapshot, type JobView } from '../job/view';
import { ownedBy, type JobStore } from './store';
import { ListQuerySchema } from './job-index';
import { toFieldIssues } from './schemas';
import {
  createJobHandler,
  idempotencyKeyOf,
  invalid,
  rawJsonBody,
  requireJsonBody,
  type CreateJobDeps,
} from './create-job';
import type { MediaSettings } from './inputs';
import { presignedViews, serveOutput } from './outputs';
import type { BodyParser } from './parse-pool';
import type { LinkSigner } from './signed-links';
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
  /** storage and settings for input and output files */
  media?: MediaSettings;
  /** signs the events and output links of views (set when API keys are) */
  links?: LinkSigner;
}

export { JOBS_BASE };
export function jobsRouter(deps: JobsRouterDeps): Router {
  const { store } = deps;
  const router = Router();
  const signer = deps.links;
  const signed = (url: string, id: string) => (signer ? `${url}?${signer.query(id)}` : url);
  const links = (id: string) => ({
    self: `${JOBS_BASE}/${encodeURIComponent(id)}`,
    events: signed(`${JOBS_BASE}/${encodeURIComponent(id)}/events`, id),
  });
  /** the view with signed links (a browser follows its job with them, without the key) */
  const decorate = (view: JobView): JobView => {
    if (!signer) return view;
    const outputs = view.outputs?.map((o) => ({ ...o, url: signed(o.url, view.id) }));
    return { ...view, ...(outputs ? { outputs } : {}), links: links(view.id) };
  };
  const ownerOf = deps.ownerOf ?? (() => undefined);
  /** the snapshot if the caller may see the job (a scoped key sees only its own) */
  const readOwn = async (req: Request, id: string) => {
    const s = await store.read(id);
    return s && ownedBy(s, ownerOf(req)) ? s : null;
  };
  const base = `${deps.media?.publicUrl ?? ''}${JOBS_BASE}`;
  const presign = deps.media && presignedViews(deps.media.storage, deps.media.outputUrlTtlS);
  /** the caller's view of a job: signed links, presigned downloads */
  const present = async (s: JobSnapshot): Promise<JobView> => {
    const view = decorate(toJobView(s, base));
    return presign ? presign(view, s) : view;
  };
  const viewer =
    (req: Request) =>
    async (id: string): Promise<JobView | null> => {
      const s = await readOwn(req, id);
      return s ? present(s) : null;
    };

  router.post('/', requireJsonBody, rawJsonBody, createJobHandler({ ...deps, links, ownerOf }));

  /** The job list (DESIGN "Operators and clients"): a scoped key lists only its own jobs. */
  router.get('/', async (req, res) => {
    const q = ListQuerySchema.safeParse(req.query);
    if (!q.success) throw invalid(toFieldIssues(q.error.issues), 'the query is invalid');
    const page = await store.list({ ...q.data, owner: ownerOf(req) });
    res.json({ jobs: await Promise.all(page.jobs.map((s) => present(s))), nextCursor: page.next });
  });

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
    res
      .status(202)
      .location(links(id).self)
      .json(await present(r.snapshot));
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
    if (!deps.media) throw notFound(`job ${id.slice(0, 100)} has no output ${n.slice(0, 10)}`);
    await serveOutput(req, res, { snapshot: s, id, n, storage: deps.media.storage, log: deps.log });
  });

  return router;
}
