/**
 * API process entry: reads the config, creates the connections, the app and the
 * dashboard, listens on PORT once Redis is reachable, and owns SIGTERM/SIGINT.
 * Shutdown order: stop accepting connections and end SSE streams, then QueueEvents,
 * subscriber, queue and Redis (ApiServices.close); idempotent, bounded by
 * SHUTDOWN_TIMEOUT_MS; a second signal exits at once.
 */
import { once } from 'node:events';
import { DASHBOARD_PATH, createDashboard } from '../../dashboard/board';
import { createApp } from '../api/app';
import { createApiServer } from '../api/server';
import { appDepsOf, createApiServices, type ApiServices } from '../api/services';
import { loadConfig, type Config } from '../config';
import { processScope } from '../lifecycle';
import { createLogger, type Logger } from '../logger';
import { describeRedis } from '../redis';
import { topUsers, userSummary } from '../fair';
import { createApiMetrics, metricsHandler, registerQueueDepth, registerUserJobs } from '../metrics';
import { startRetentionCleaner } from '../queue';
import { createWebhookQueue } from '../webhooks/queue';
import pkg from '../../package.json';

async function main() {
  const config = loadConfig();
  const log = createLogger({ logLevel: config.logLevel, logPretty: config.logPretty, name: 'api' });
  // released in reverse: the HTTP server (and SSE streams), the webhook queue, the services;
  // a signal may arrive while we still wait for Redis
  const scope = processScope({
    log,
    timeoutMs: config.shutdownTimeoutMs,
    stopping: 'shutting down',
    stopped: 'api stopped',
  });

  log.info({ redis: describeRedis(config), queue: config.queueName }, 'starting api');
  const services = await createApiServices(config, log);
  scope.defer('services', () => services.close());
  if (scope.closed) return;

  const webhookQueue = createWebhookQueue({
    ...config,
    connectionName: `api-${process.pid}-webhooks`,
  });
  webhookQueue.on('error', () => undefined); // reported by the image queue's handler already
  const stopWebhookCleaner = startRetentionCleaner(
    webhookQueue,
    config.retentionMs,
    config.cleanIntervalMs,
    log,
  );
  scope.defer('webhook queue', () => {
    stopWebhookCleaner();
    return webhookQueue.close().catch(() => webhookQueue.disconnect());
  });

  const { app, dashboard } = createHttpApp(config, services, webhookQueue, log);
  const server = createApiServer(app).listen(config.port);
  scope.defer('http server', async () => {
    const closed = once(server, 'close');
    server.close();
    services.hub.close(); // open SSE streams would keep server.close() waiting
    server.closeIdleConnections();
    await closed;
  });
  await once(server, 'listening');
  log.info(
    { port: config.port, dashboard: dashboard ? DASHBOARD_PATH : undefined },
    `api listening on http://localhost:${config.port}`,
  );
}

/** The Express app: the /v1 API, the dashboard, /metrics. */
function createHttpApp(
  config: Config,
  services: ApiServices,
  webhookQueue: ReturnType<typeof createWebhookQueue>,
  log: Logger,
) {
  const metrics = createApiMetrics();
  registerQueueDepth(metrics, [services.queue, webhookQueue]);
  registerUserJobs(metrics, () => topUsers(services.redis, config, 10));

  const dashboard = createDashboard({
    user: config.dashboardUser,
    password: config.dashboardPassword,
    queues: [
      {
        queue: services.queue,
        description: userSummary(services.redis, config, 'ComfyUI image generation jobs'),
        imageJobs: true,
      },
      { queue: webhookQueue, description: 'Webhook deliveries' },
    ],
    log,
    environment: config.production ? 'production' : undefined,
  });
  const app = createApp({
    ...appDepsOf(services, config, log),
    version: pkg.version,
    mounts: dashboard ? [dashboard] : [],
    metrics: metricsHandler(metrics),
  });
  if (config.apiKeys.length === 0)
    log.warn('API_KEYS is not set: /v1 accepts requests without an API key');

  return { app, dashboard };
}

main().catch((err) => {
  console.error(err instanceof Error ? `${err.name}: ${err.message}` : err);
  process.exit(1);
});
