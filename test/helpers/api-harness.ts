import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Worker } from 'bullmq';
import type { Express } from 'express';
import { createDashboard } from '../../dashboard/board';
import { createApp, type ApiDeps } from '../../src/api/app';
import { createApiServer } from '../../src/api/server';
import { appDepsOf, createApiServices, type ApiServices } from '../../src/api/services';
import { loadConfig, type Config } from '../../src/config';
import { createLogger, type Logger } from '../../src/logger';
import { redisOptions } from '../../src/redis';
import { startRedis, type RedisServer } from './redis-server';
import type { JobData, JobResult } from '../../src/job/data';

/**
 * An API wired exactly as src/bin/api.ts wires it, against the test's own redis-server
 * and a random queue name; `listen()` only for tests that need a real HTTP client.
 */

export interface ApiHarness {
  redis: RedisServer;
  env: Record<string, string>;
  config: Config;
  services: ApiServices;
  app: Express;
  /** what the app was made of (a test can make another app with one part changed) */
  deps: ApiDeps;
  log: Logger;
  /** every log line, parsed */
  logs: Array<Record<string, unknown>>;
  /** listens on a free port (once) and returns the base URL */
  listen(): Promise<string>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  deps?: Partial<ApiDeps>;
  logLevel?: string;
  /** extra redis-server arguments (e.g. `--appendfsync always` for kill tests) */
  redisArgs?: string[];
}

/**
 * A BullMQ worker without a processor on the harness's queue: the test takes and moves
 * jobs itself (`getNextJob`, `moveToCompleted`…), as a worker would. The caller closes it.
 */
export function manualWorker(config: Config): Worker<JobData, JobResult> {
  return new Worker<JobData, JobResult>(config.queueName, null, {
    connection: redisOptions(config, 'worker'),
    prefix: config.queuePrefix,
    autorun: false,
  });
}

/**
 * One harness for all the tests of a file (started before them, closed after them) and a
 * `manualWorker` on its queue, handed to `use`: the tests take jobs themselves, as a worker
 * would, without running them.
 */
export function harnessWithManualWorker(
  use: (h: ApiHarness, worker: Worker<JobData, JobResult>) => void,
  opts: HarnessOptions = {},
): void {
  let h: ApiHarness | undefined;
  let worker: Worker<JobData, JobResult> | undefined;
  beforeAll(async () => {
    h = await startApiHarness(opts);
    worker = manualWorker(h.config);
    use(h, worker);
  });
  afterAll(async () => {
    await worker?.close();
    await h?.close();
  });
}

/** An app's required parts on `services`, none of the optional ones (keys, limits, media). */
export function bareAppDeps(services: ApiServices, log: Logger): ApiDeps {
  const { store, parser, hub, comfy } = services;
  return { store, parser, hub, comfy, log, apiKeys: [] };
}

/** Closes an API's HTTP server: its event streams ended (`hub`), every connection dropped. */
export async function closeApiServer(server: Server, hub: { close(): void }): Promise<void> {
  const closed = once(server, 'close');
  server.close();
  hub.close();
  server.closeAllConnections();
  await closed;
}

export function captureLogger(level = 'info') {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  return { log: createLogger({ logLevel: level }, sink), logs };
}

export async function startApiHarness(opts: HarnessOptions = {}): Promise<ApiHarness> {
  const redis = await startRedis(opts.redisArgs);
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    QUEUE_NAME: `api-${randomBytes(4).toString('hex')}`,
    COMFYUI_URL: 'http://127.0.0.1:1',
    LOG_LEVEL: 'info',
    ...opts.env,
  };
  // a folder of its own (removed by close) unless the test brings its storage
  env.STORAGE_URL ??= `file://${mkdtempSync(join(tmpdir(), 'cq-files-'))}`;
  const config = loadConfig(env);
  const { log, logs } = captureLogger(opts.logLevel ?? 'info');
  let services: ApiServices;
  try {
    services = await createApiServices(config, log);
  } catch (err) {
    await redis.stop();
    throw err;
  }
  const dashboard = createDashboard({
    user: config.dashboardUser,
    password: config.dashboardPassword,
    queues: [
      { queue: services.queue, description: 'ComfyUI image generation jobs', imageJobs: true },
    ],
    log,
  });
  const deps: ApiDeps = {
    ...appDepsOf(services, config, log),
    mounts: dashboard ? [dashboard] : [],
    ...opts.deps,
  };
  const app = createApp(deps);

  let server: Server | undefined;
  return {
    redis,
    env,
    config,
    services,
    app,
    deps,
    log,
    logs,
    async listen() {
      if (!server) {
        server = createApiServer(app).listen(0, '127.0.0.1');
        await once(server, 'listening');
      }
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    async close() {
      if (server) await closeApiServer(server, services.hub);
      await services.close();
      await redis.stop();
      if (config.storage.kind === 'file')
        rmSync(config.storage.dir, { recursive: true, force: true });
    },
  };
}
