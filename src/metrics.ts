import { createServer, type Server } from 'node:http';
import type { RequestHandler } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AnalyticsSink } from './analytics';
import type { Logger } from './logger';

/**
 * Prometheus metrics (prom-client). One registry per process, each with only what that
 * process owns: Node's default metrics (unprefixed, as standard dashboards expect) in both;
 * the queue depth in the API (GET /metrics); the job counters, the ComfyUI request
 * histogram and instance health and the webhook deliveries in the worker (its own small
 * HTTP port). Job events reach the counters through an AnalyticsSink, so the processor
 * reports each event once and does not know about metrics. ComfyUI instances are labelled
 * `comfyui_instance`: `instance` is the label Prometheus gives every scraped target.
 */

/** A registry with Node's default process metrics. */
function processRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** The API process's metrics: the process, and the queue depth (registerQueueDepth). */
export function createApiMetrics(): { registry: Registry } {
  return { registry: processRegistry() };
}

/** The worker process's metrics. */
export function createMetrics() {
  const registry = processRegistry();
  const r = [registry];
  return {
    registry,
    jobsCompleted: new Counter({
      name: 'comfyui_jobs_completed_total',
      help: 'Jobs completed',
      labelNames: ['job_type'],
      registers: r,
    }),
    jobsFailed: new Counter({
      name: 'comfyui_jobs_failed_total',
      help: 'Jobs failed, by error code',
      labelNames: ['code'],
      registers: r,
    }),
    jobWait: new Histogram({
      name: 'comfyui_job_wait_seconds',
      help: 'Time from enqueue to the first worker pickup',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800],
      registers: r,
    }),
    jobDuration: new Histogram({
      name: 'comfyui_job_duration_seconds',
      help: 'Time from the first pickup to the end, by outcome',
      labelNames: ['outcome'],
      buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600],
      registers: r,
    }),
    recoveries: new Counter({
      name: 'comfyui_job_recoveries_total',
      help: 'Jobs resumed after a crash or hand-off',
      labelNames: ['reason'],
      registers: r,
    }),
    resubmissions: new Counter({
      name: 'comfyui_job_resubmissions_total',
      help: 'Prompts submitted again because ComfyUI lost them',
      registers: r,
    }),
    moves: new Counter({
      name: 'comfyui_prompt_moves_total',
      help: 'Pending prompts moved to an idle ComfyUI instance',
      registers: r,
    }),
    comfyRequests: new Histogram({
      name: 'comfyui_request_duration_seconds',
      help: 'ComfyUI HTTP requests by instance, route and outcome',
      labelNames: ['comfyui_instance', 'route', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: r,
    }),
    webhookDeliveries: new Counter({
      name: 'comfyui_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome',
      labelNames: ['outcome'],
      registers: r,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Whether each ComfyUI instance answers its health probe (1) or not (0), read when scraped. */
export function registerInstanceHealth(
  metrics: Metrics,
  urls: readonly string[],
  healthyUrls: () => string[],
) {
  new Gauge({
    name: 'comfyui_instance_up',
    help: 'ComfyUI instance answers its health probe (1) or not (0), as this worker sees it',
    labelNames: ['comfyui_instance'],
    registers: [metrics.registry],
    collect() {
      const healthy = new Set(healthyUrls());
      for (const url of urls) this.set({ comfyui_instance: url }, healthy.has(url) ? 1 : 0);
    },
  });
}

/** Queue depth by state, read from Redis when scraped (the API's: one series per queue). */
export function registerQueueDepth(
  metrics: { registry: Registry },
  queues: { name: string; getJobCounts: () => Promise<Record<string, number>> }[],
) {
  new Gauge({
    name: 'comfyui_queue_jobs',
    help: 'Jobs in the queue by state',
    labelNames: ['queue', 'state'],
    registers: [metrics.registry],
    async collect() {
      for (const q of queues) {
        const counts = await q.getJobCounts();
        for (const [state, n] of Object.entries(counts)) this.set({ queue: q.name, state }, n);
      }
    },
  });
}

/**
 * Jobs of the users with the most (src/fair `topUsers`: waiting, parked, active), read from
 * Redis when scraped; only the top `top` users get series, so the label set stays bounded.
 * Series of users no longer among them are dropped at each scrape.
 */
export function registerUserJobs(
  metrics: { registry: Registry },
  read: () => Promise<{ user: string; waiting: number; active: number; parked: number }[]>,
) {
  new Gauge({
    name: 'comfyui_user_jobs',
    help: 'Jobs of the users with the most, by state (waiting, parked, active)',
    labelNames: ['user', 'state'],
    registers: [metrics.registry],
    async collect() {
      const users = await read();
      this.reset();
      for (const u of users) {
        for (const state of ['waiting', 'parked', 'active'] as const)
          this.set({ user: u.user, state }, u[state]);
      }
    },
  });
}

/** Turns job events into counter and histogram updates. */
export function metricsSink(m: Metrics): AnalyticsSink {
  return {
    capture(event, _distinctId, props) {
      const p = props as Record<string, unknown>;
      switch (event) {
        case 'comfyui_job_started':
          m.jobWait.observe(Number(p.waitMs) / 1000);
          break;
        case 'comfyui_job_completed':
          m.jobsCompleted.inc({ job_type: String(p.jobType) });
          m.jobDuration.observe({ outcome: 'completed' }, Number(p.durationMs) / 1000);
          break;
        case 'comfyui_job_failed':
          m.jobsFailed.inc({ code: String(p.code) });
          m.jobDuration.observe({ outcome: 'failed' }, Number(p.durationMs) / 1000);
          break;
        case 'comfyui_job_recovered':
          m.recoveries.inc({ reason: String(p.reason ?? 'stall') });
          break;
        case 'comfyui_job_resubmitted':
          m.resubmissions.inc();
          break;
        case 'comfyui_prompt_moved':
          m.moves.inc();
          break;
        default:
          break;
      }
    },
    async close() {},
  };
}

/** GET /metrics for an Express app (the API's). */
export function metricsHandler(metrics: { registry: Registry }): RequestHandler {
  return (_req, res, next) => {
    metrics.registry
      .metrics()
      .then((text) => res.type(metrics.registry.contentType).send(text))
      .catch(next);
  };
}

/** Serves GET /metrics on `port` (0 = any free port). A port in use is reported, not fatal. */
export async function serveMetrics(
  metrics: Metrics,
  port: number,
  log: Logger,
): Promise<Server | undefined> {
  const server = createServer((req, res) => {
    if (req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metrics.registry
      .metrics()
      .then((text) =>
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      )
      .catch((err: Error) =>
        res
          .writeHead(503, { 'content-type': 'text/plain' })
          .end(`metrics unavailable: ${err.message}`),
      );
  });
  return new Promise((resolve) => {
    server.once('error', (err) => {
      log.warn(
        { port, err: err.message },
        'metrics port unavailable: worker metrics are not served',
      );
      resolve(undefined);
    });
    server.listen(port, () => {
      const bound = (server.address() as { port: number }).port;
      log.info({ port: bound }, `worker metrics on http://0.0.0.0:${bound}/metrics`);
      resolve(server);
    });
  });
}
