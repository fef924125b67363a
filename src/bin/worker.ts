/**
 * Worker process entry: reads the config, wires the image worker and the webhook worker,
 * owns the signals. First SIGTERM/SIGINT: stop taking jobs and hand active ones back
 * (bounded by SHUTDOWN_TIMEOUT_MS). A second signal exits at once.
 */
import { writeSync } from 'node:fs';
import { createAnalytics } from '../analytics-posthog';
import { loadConfig } from '../config';
import { processScope } from '../lifecycle';
import { createLogger } from '../logger';
import { createMetrics } from '../metrics';
import { describeRedis } from '../redis';
import { createNotifyFinished, startWebhookWorker } from '../webhooks';
import { startImageWorker } from '../worker/worker';

async function main() {
  const config = loadConfig();
  const log = createLogger({
    logLevel: config.logLevel,
    logPretty: config.logPretty,
    name: 'worker',
  });
  log.info({ redis: describeRedis(config) }, 'starting worker');
  const metrics = createMetrics();
  const analytics = createAnalytics(config, log);
  // test-only: SIGKILL at COMFYQ_CRASH_AT; SIGSTOP (once) at COMFYQ_PAUSE_AT, announced
  // with a synchronous write so the test sees it before the process stops
  let pauseAt = config.pauseAt;
  const fault =
    config.crashAt || pauseAt
      ? (point: string) => {
          if (point === config.crashAt) {
            log.warn({ point }, 'fault injection: killing this process');
            process.kill(process.pid, 'SIGKILL');
          }
          if (point === pauseAt) {
            pauseAt = undefined;
            writeSync(
              2,
              `${JSON.stringify({ level: 40, msg: 'fault injection: SIGSTOP', point })}\n`,
            );
            process.kill(process.pid, 'SIGSTOP');
          }
        }
      : undefined;
  const scope = processScope({
    log,
    timeoutMs: config.shutdownTimeoutMs,
    stopping: 'shutting down: handing active jobs back',
  });
  scope.defer('analytics flush', () => analytics.close());
  const notify = createNotifyFinished(config);
  scope.defer('webhook queue', () => notify.close());
  const webhooks = await startWebhookWorker(config, { log, metrics });
  scope.defer('webhook worker', () => webhooks.close());
  const worker = await startImageWorker(config, {
    log,
    analytics,
    fault,
    metrics,
    notifyFinished: notify.notifyFinished,
  });
  scope.defer('image worker', () => worker.close());
}

main().catch((err) => {
  console.error(err instanceof Error ? `${err.name}: ${err.message}` : err);
  process.exit(1);
});
