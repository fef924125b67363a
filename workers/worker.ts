/**
 * Worker process entry: reads the config, wires the image worker and the webhook worker,
 * owns the signals. First SIGTERM/SIGINT: stop taking jobs and hand active ones back
 * (bounded by SHUTDOWN_TIMEOUT_MS). A second signal exits at once.
 */
import { writeSync } from 'node:fs';
import { createAnalytics } from '../src/analytics-posthog';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { createMetrics } from '../src/metrics';
import { describeRedis } from '../src/redis';
import { createNotifyFinished, startWebhookWorker } from '../src/webhooks';
import { startImageWorker } from '../src/worker/worker';

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
  const notify = createNotifyFinished(config);
  const webhooks = await startWebhookWorker(config, { log, metrics });
  const worker = await startImageWorker(config, {
    log,
    analytics,
    fault,
    metrics,
    notifyFinished: notify.notifyFinished,
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down: handing active jobs back');
    const timer = setTimeout(() => {
      log.error('shutdown took longer than SHUTDOWN_TIMEOUT_MS: exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    timer.unref();
    const step = (what: string, fn: () => Promise<unknown>) =>
      fn().catch((err: unknown) =>
        log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          `shutdown: ${what} failed`,
        ),
      );
    void (async () => {
      await step('image worker', () => worker.close());
      await step('webhook worker', () => webhooks.close());
      await step('webhook queue', () => notify.close());
      await step('analytics flush', () => analytics.close());
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  console.error(err instanceof Error ? `${err.name}: ${err.message}` : err);
  process.exit(1);
});
