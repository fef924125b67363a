/**
 * API process entry: reads the config, creates the connections, the app and the
 * dashboard, listens on PORT once Redis is reachable, and owns SIGTERM/SIGINT.
 * Shutdown order: stop accepting connections and end SSE streams, then QueueEvents,
 * subscriber, queue and Redis (ApiServices.close); idempotent, bounded by
 * SHUTDOWN_TIMEOUT_MS; a second signal exits at once.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import { DASHBOARD_PATH, createDashboard } from '../../dashboard/board';
import { createApp } from '../api/app';
import { createApiServices, type ApiServices } from '../api/services';
import { loadConfig } from '../config';
import { createLogger } from '../logger';
import { describeRedis } from '../redis';
import { createApiMetrics, metricsHandler, registerQueueDepth } from '../metrics';
import { startRetentionCleaner } from '../queue';
import { createWebhookQueue } from '../webhooks/queue';
import { checkWebhookTarget } from '../webhooks/url-policy';
import pkg from '../../package.json';

async function main() {
  const config = loadConfig();
  const log = createLogger({ logLevel: config.logLevel, logPretty: config.logPretty, name: 'api' });
  // what exists so far: a signal may arrive while we still wait for Redis
  const running: { services?: ApiServices; server?: Server } = {};
  const closeWebhookQueueRef: { current?: () => Promise<unknown> } = {};

  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      log.error('shutdown took longer than SHUTDOWN_TIMEOUT_MS: exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    timer.unref();
    stopping = (async () => {
      const { server, services } = running;
      if (server) {
        const closed = once(server, 'close');
        server.close();
        services?.hub.close(); // open SSE streams would keep server.close() waiting
        server.closeIdleConnections();
        await closed;
      }
      await closeWebhookQueueRef.current?.();
      await services?.close();
      log.info('api stopped');
    })();
    void stopping.then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  log.info({ redis: describeRedis(config), queue: config.queueName }, 'starting api');
  const services = await createApiServices(config, log);
  running.services = services;
  if (stopping) return;

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
  const closeWebhookQueue = () => {
    stopWebhookCleaner();
    return webhookQueue.close().catch(() => webhookQueue.disconnect());
  };
  closeWebhookQueueRef.current = closeWebhookQueue;
  const metrics = createApiMetrics();
  registerQueueDepth(metrics, [services.queue, webhookQueue]);

  const dashboard = createDashboard({
    user: config.dashboardUser,
    password: config.dashboardPassword,
    queues: [
      { queue: services.queue, description: 'ComfyUI image generation jobs', imageJobs: true },
      { queue: webhookQueue, description: 'Webhook deliveries' },
    ],
    log,
    environment: config.production ? 'production' : undefined,
  });
  const app = createApp({
    store: services.store,
    parser: services.parser,
    hub: services.hub,
    comfy: services.comfy,
    log,
    apiKeys: config.apiKeys,
    version: pkg.version,
    mounts: dashboard ? [dashboard] : [],
    webhookUrlPolicy: (url) => checkWebhookTarget(url, config.webhookAllowPrivate),
    metrics: metricsHandler(metrics),
  });
  if (config.apiKeys.length === 0)
    log.warn('API_KEYS is not set: /v1 accepts requests without an API key');

  const server = app.listen(config.port);
  running.server = server;
  await once(server, 'listening');
  log.info(
    { port: config.port, dashboard: dashboard ? DASHBOARD_PATH : undefined },
    `api listening on http://localhost:${config.port}`,
  );
}

main().catch((err) => {
  console.error(err instanceof Error ? `${err.name}: ${err.message}` : err);
  process.exit(1);
});
