/**
 * The baseline: a plain BullMQ worker with a no-op processor and the same options as our
 * image worker (src/worker/worker.ts) under the same configuration (src/config/), so the
 * only difference measured is what our processor does. Prints `raw worker ready`.
 * Environment: the worker's (REDIS_URL, QUEUE_NAME, WORKER_CONCURRENCY, …).
 */
import { Worker } from 'bullmq';
import { loadConfig } from '../src/config';
import { retentionKeep } from '../src/queue';
import { redisOptions } from '../src/redis';

async function main() {
  const config = loadConfig();
  const worker = new Worker(config.queueName, async () => undefined, {
    connection: redisOptions({ ...config, connectionName: 'raw-worker' }, 'worker'),
    prefix: config.queuePrefix,
    concurrency: config.workerConcurrency * config.comfyuiUrls.length,
    lockDuration: config.lockDurationMs,
    stalledInterval: config.stalledIntervalMs,
    maxStalledCount: config.maxStalledCount,
    drainDelay: config.drainDelayS,
    removeOnComplete: retentionKeep(config),
    removeOnFail: retentionKeep(config),
  });
  worker.on('error', (err) => console.error(`raw worker error: ${err.message}`));
  await worker.waitUntilReady();
  console.log('raw worker ready');
  const stop = () => void worker.close().finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
