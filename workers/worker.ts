/**
 * Worker process entry: reads the config, wires the worker, owns the signals.
 * First SIGTERM/SIGINT: stop taking jobs and hand active ones back (bounded by
 * SHUTDOWN_TIMEOUT_MS). A second signal exits at once.
 */
import { logAnalyticsSink } from '../src/analytics';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { createMetrics } from '../src/metrics';
import { describeRedis } from '../src/redis';
import { startImageWorker } from '../src/worker/worker';

async function main() {
  const config = loadConfig();
  const log = createLogger({
    logLevel: config.logLevel,
    logPretty: config.logPretty,
    name: 'worker',
  });
  log.info({ redis: describeRedis(config) }, 'starting worker');
  const analytics = logAnalyticsSink(log);
  const fault = config.crashAt
    ? (point: string) => {
        if (point === config.crashAt) {
          log.warn({ point }, 'fault injection: killing this process');
          process.kill(process.pid, 'SIGKILL');
        }
      }
    : undefined;
  const worker = await startImageWorker(config, {
    log,
    analytics,
    fault,
    metrics: createMetrics(),
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
    void worker
      .close()
      .then(() => analytics.close())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  console.error(err instanceof Error ? `${err.name}: ${err.message}` : err);
  process.exit(1);
});
