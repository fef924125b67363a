import express, { type Express, type RequestHandler } from 'express';
import type { ComfyClient } from '../comfy/client';
import type { Logger } from '../logger';
import { bearerAuth, ownerOf, parseApiKeys } from './auth';
import { ApiError, errorHandler, notFoundHandler, sendError } from './errors';
import type { MediaSettings } from './inputs';
import { JOBS_BASE, jobsRouter } from './jobs-routes';
import { swaggerUi } from './docs';
import { buildOpenApiDocument } from './openapi';
import type { BodyParser } from './parse-pool';
import { createLinkSigner, linkSecret } from './signed-links';
import type { JobEventHub } from './sse';
import type { JobStore } from './store';
import { UPLOADS_BASE, uploadsRouter } from './uploads-routes';

/**
 * The Express app: routes only; no listen, no connections of its own (the entry file and
 * the tests create those and pass them in), so supertest drives it without a port.
 */

export interface ApiDeps {
  store: JobStore;
  /** parses and validates job bodies off the event loop (ApiServices owns it) */
  parser: BodyParser;
  hub: JobEventHub;
  /** the ComfyUI client for an instance URL (outputs are streamed from where they were made) */
  comfy: (baseUrl: string) => ComfyClient;
  log: Logger;
  /** Bearer keys for /v1 (`API_KEYS` entries: `key` or `name:key`); empty: no auth */
  apiKeys: readonly string[];
  /** names among `name:key` entries that are admins (`API_ADMIN_NAMES`) */
  apiAdminNames?: readonly string[];
  /** signed links (LINK_SECRET, LINK_TTL_S); only used when keys are set */
  linkSecret?: string;
  linkTtlS?: number;
  /** per-key rate limit for /v1 and the queue-depth check (ApiServices makes them) */
  rateLimit?: RequestHandler;
  admit?: () => Promise<void>;
  version?: string;
  /** PUBLIC_URL: the server named in the OpenAPI document */
  publicUrl?: string;
  /** SSE heartbeat (and re-read) interval; default 15 s */
  sseHeartbeatMs?: number;
  /** extra mounts before the 404 handler: the dashboard, later the webhooks admin */
  mounts?: Array<{ path: string; handlers: RequestHandler[] }>;
  /** the webhook URL policy (SSRF guard) applied at submission: a refusal reason or null */
  webhookUrlPolicy?: (url: string) => Promise<string | null> | string | null | undefined;
  /** input and output files: POST /v1/uploads, job inputs, outputs served from storage */
  media?: MediaSettings;
  /** GET /metrics (Prometheus text), added by the metrics issue */
  metrics?: RequestHandler;
}

export const READY_TIMEOUT_MS = 1_000;

export function createApp(deps: ApiDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestLog(deps.log));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    if (await deps.store.ping(READY_TIMEOUT_MS)) {
      res.json({ status: 'ready' });
      return;
    }
    sendError(
      res,
      new ApiError(
        503,
        'queue_unavailable',
        `Redis did not answer PING within ${READY_TIMEOUT_MS} ms`,
      ),
    );
  });
  if (deps.metrics) app.get('/metrics', deps.metrics);

  const openapi = buildOpenApiDocument({
    version: deps.version ?? '0.0.0',
    publicUrl: deps.publicUrl,
  });
  app.get('/v1/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.use('/docs', swaggerUi('/v1/openapi.json'));
  const keys = parseApiKeys(deps.apiKeys, deps.apiAdminNames);
  const links =
    keys.length > 0
      ? createLinkSigner(linkSecret(deps.linkSecret, deps.apiKeys), deps.linkTtlS ?? 21_600)
      : undefined;
  app.use('/v1', bearerAuth({ apiKeys: keys, links }));
  if (deps.rateLimit) app.use('/v1', deps.rateLimit);
  if (deps.media) {
    const { storage, uploadMaxBytes: maxBytes } = deps.media;
    app.use(UPLOADS_BASE, uploadsRouter({ storage, maxBytes, log: deps.log, ownerOf }));
  }
  app.use(
    JOBS_BASE,
    jobsRouter({
      store: deps.store,
      parser: deps.parser,
      hub: deps.hub,
      comfy: deps.comfy,
      log: deps.log,
      sseHeartbeatMs: deps.sseHeartbeatMs ?? 15_000,
      webhookUrlPolicy: deps.webhookUrlPolicy,
      media: deps.media,
      ownerOf,
      admit: deps.admit,
      links,
    }),
  );
  for (const m of deps.mounts ?? []) app.use(m.path, ...m.handlers);

  app.use(notFoundHandler);
  app.use(errorHandler(deps.log));
  return app;
}

/** One debug line per request (method, path without query, status, duration); no headers. */
function requestLog(log: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('close', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const path = req.originalUrl.split('?')[0].slice(0, 200);
      log.debug(
        { method: req.method, path, status: res.statusCode, ms: Math.round(ms) },
        'request',
      );
    });
    next();
  };
}
