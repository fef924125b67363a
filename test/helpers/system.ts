import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueEvents } from 'bullmq';
import { logAnalyticsSink } from '../../src/analytics';
import { loadConfig, type Config } from '../../src/config';
import { createLogger } from '../../src/logger';
import { createImageQueue, IMAGE_JOB_NAME, type ImageQueue } from '../../src/queue';
import { redisOptions } from '../../src/redis';
import { startImageWorker, type ImageWorker, type WorkerDeps } from '../../src/worker/worker';
import { createSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/server';
import { SIM_VERSIONS, type SimVersion } from '../../src/simulator/api';
import { startRedis, type RedisServer } from './redis-server';
import { newJobData, type Workflow } from '../../src/job/data';

/**
 * The ComfyUI the simulators of a test play: SIM_VERSION (`0.3.64`, the default, or `current`);
 * jest's `comfyui-current` project runs the lifecycle tests again with `current`.
 */
export function simVersion(): SimVersion {
  const v = process.env.SIM_VERSION || '0.3.64';
  if (!(SIM_VERSIONS as readonly string[]).includes(v))
    throw new Error(`SIM_VERSION must be one of ${SIM_VERSIONS.join(', ')}, got "${v}"`);
  return v as SimVersion;
}

/** Settings that make crash recovery take seconds, not a minute, in tests. */
export const FAST_ENV = {
  POLL_INTERVAL_MS: '100',
  LOCK_DURATION_MS: '2000',
  STALLED_INTERVAL_MS: '1000',
  SUBMIT_GRACE_MS: '500',
  RETRY_BACKOFF_MS: '200',
  COMFYUI_TIMEOUT_MS: '2000',
  COMFYUI_HEALTH_INTERVAL_MS: '200',
  DRAIN_DELAY_S: '1',
  LOG_LEVEL: 'silent',
  METRICS_PORT: '0',
};

export interface TestSystem {
  redis: RedisServer;
  sim: Simulator;
  /** every simulator of the system, `sim` first (`startSystem`'s `instances`) */
  sims: Simulator[];
  env: Record<string, string>;
  config: Config;
  queue: ImageQueue;
  events: QueueEvents;
  enqueue(workflow: Workflow, opts?: { jobType?: string; userId?: string }): Promise<string>;
  startWorker(overrides?: Record<string, string>, deps?: Partial<WorkerDeps>): Promise<ImageWorker>;
  close(): Promise<void>;
}

/**
 * A real redis-server, `instances` simulators (COMFYUI_URL names the first), a producer queue
 * and QueueEvents, isolated by queue name.
 */
export async function startSystem(
  envOverrides: Record<string, string> = {},
  simOptions: SimulatorOptions = {},
  instances = 1,
): Promise<TestSystem> {
  const redis = await startRedis();
  const sims = await Promise.all(
    Array.from({ length: instances }, () =>
      createSimulator({ progressIntervalMs: 50, version: simVersion(), ...simOptions }),
    ),
  );
  const sim = sims[0];
  const env: Record<string, string> = {
    ...FAST_ENV,
    REDIS_URL: redis.url,
    COMFYUI_URL: sim.url,
    QUEUE_NAME: `q-${randomBytes(4).toString('hex')}`,
    ...envOverrides,
  };
  // a folder of its own (removed by close) unless the test brings its storage
  env.STORAGE_URL ??= `file://${mkdtempSync(join(tmpdir(), 'cq-files-'))}`;
  const config = loadConfig(env);
  const queue = createImageQueue(config);
  await queue.waitUntilReady();
  const events = new QueueEvents(config.queueName, {
    connection: redisOptions(config, 'worker'),
    prefix: config.queuePrefix,
  });
  await events.waitUntilReady();
  events.setMaxListeners(200);
  const workers: ImageWorker[] = [];
  return {
    redis,
    sim,
    sims,
    env,
    config,
    queue,
    events,
    async enqueue(workflow, opts = {}) {
      const job = await queue.add(
        IMAGE_JOB_NAME,
        newJobData(workflow, { jobType: opts.jobType ?? 'test', userId: opts.userId }, Date.now()),
      );
      return job.id!;
    },
    async startWorker(overrides = {}, deps = {}) {
      const c = loadConfig({ ...env, ...overrides });
      const log = createLogger({ logLevel: c.logLevel });
      const w = await startImageWorker(c, { log, analytics: logAnalyticsSink(log), ...deps });
      workers.push(w);
      return w;
    },
    async close() {
      await Promise.all(workers.map((w) => w.close()));
      await events.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await Promise.all(sims.map((s) => s.close()));
      await redis.stop();
      if (config.storage.kind === 'file')
        rmSync(config.storage.dir, { recursive: true, force: true });
    },
  };
}
