import { once } from 'node:events';
import { QueueEvents } from 'bullmq';
import type IORedis from 'ioredis';
import { ComfyClient } from '../comfy/client';
import { errorText, Scope, withTimeout } from '../lifecycle';
import type {
  ApiAccessConfig,
  ComfyConfig,
  FairConfig,
  FilesConfig,
  JobPolicyConfig,
  QueueConnectionConfig,
  WebhookSendConfig,
} from '../config/groups';
import type { Logger } from '../logger';
import {
  cancelChannel,
  createImageQueue,
  startRetentionCleaner,
  type ImageQueue,
  jobKey,
} from '../queue';
import { createStorage, type Storage } from '../storage';
import { startStorageSweeper } from '../storage/retention';
import { createRedis, describeRedis, redisOptions, warnIfEvicting } from '../redis';
import type { RequestHandler } from 'express';
import { checkWebhookTarget } from '../webhooks/url-policy';
import type { ApiDeps } from './app';
import { queueDepthCheck, rateLimit } from './fair-use';
import { mediaSettings } from './inputs';
import { createBodyParser, type BodyParser } from './parse-pool';
import { createJobEventHub, type JobEventHub } from './sse';
import { createJobStore, type JobStore } from './store';

/**
 * The connections and long-lived objects of one API process, created in order and closed
 * in reverse: the producer Queue and a fail-fast client (requests), ONE QueueEvents and a
 * cancel-channel subscriber (SSE), the retention cleaner. Whoever calls this owns close().
 */

export type ApiConfig = QueueConnectionConfig &
  JobPolicyConfig &
  ApiAccessConfig &
  FilesConfig &
  FairConfig &
  Pick<ComfyConfig, 'comfyuiTimeoutMs'> &
  Pick<WebhookSendConfig, 'webhookAllowPrivate'>;

/** The app's dependencies that come from the services and the config (entry file and tests). */
export function appDepsOf(services: ApiServices, config: ApiConfig, log: Logger): ApiDeps {
  return {
    store: services.store,
    parser: services.parser,
    hub: services.hub,
    comfy: services.comfy,
    log,
    apiKeys: config.apiKeys,
    apiAdminNames: config.apiAdminNames,
    linkSecret: config.linkSecret,
    linkTtlS: config.linkTtlS,
    rateLimit: services.rateLimit,
    admit: services.admit,
    webhookUrlPolicy: (url) => checkWebhookTarget(url, config.webhookAllowPrivate),
    publicUrl: config.publicUrl,
    media: mediaSettings(config, services.storage),
  };
}

export interface ApiServices {
  queue: ImageQueue;
  redis: IORedis;
  queueEvents: QueueEvents;
  store: JobStore;
  parser: BodyParser;
  hub: JobEventHub;
  comfy: (baseUrl: string) => ComfyClient;
  /** input and output files (STORAGE_URL) */
  storage: Storage;
  /** per-key rate limit for /v1 (RATE_LIMIT_REQUESTS), if configured */
  rateLimit?: RequestHandler;
  /** refuses a new job while MAX_QUEUED_JOBS wait, if configured */
  admit?: () => Promise<void>;
  /** ends SSE streams, stops the cleaner, closes every connection; safe to call twice */
  close(): Promise<void>;
}

/** Each close step's bound: with Redis down, BullMQ's close() can wait for an 'end' that never comes. */
const CLOSE_STEP_MS = 2_000;

/** Logs at most one line per `everyMs` for a recurring error (a Redis outage repeats every 2 s). */
function throttled(log: Logger, what: string, everyMs = 10_000) {
  let last = 0;
  return (err: Error) => {
    const now = Date.now();
    if (now - last < everyMs) return;
    last = now;
    log.warn({ err: err.message }, `redis (${what}) error`);
  };
}

/** Redis must be up before the API listens: wait (reconnecting every ≤ 2 s), saying so. */
async function waitForRedis(config: ApiConfig, queue: ImageQueue, redis: IORedis, log: Logger) {
  const waiting = setTimeout(
    () => log.warn({ redis: describeRedis(config) }, 'waiting for Redis to accept connections'),
    2_000,
  );
  try {
    await queue.waitUntilReady();
    if (redis.status !== 'ready') await once(redis, 'ready');
    await warnIfEvicting(redis, log);
  } finally {
    clearTimeout(waiting);
  }
}

/** The retention sweep of stored files: a job's files go once its job is gone. */
function storageSweep(config: ApiConfig, storage: Storage, redis: IORedis, log: Logger) {
  return {
    storage,
    jobsExist: async (ids: string[]) => {
      const pipe = redis.pipeline();
      for (const id of ids) pipe.exists(jobKey(config, id));
      const replies = (await pipe.exec()) ?? [];
      // an error reads as "exists": nothing is removed on doubt
      return ids.map((_, i) => replies[i]?.[0] != null || replies[i]?.[1] === 1);
    },
    retentionMs: config.retentionMs,
    intervalMs: config.cleanIntervalMs,
    log,
  };
}

export async function createApiServices(config: ApiConfig, log: Logger): Promise<ApiServices> {
  const settings = { ...config, connectionName: `api-${process.pid}` };
  const scope = new Scope({
    stepMs: CLOSE_STEP_MS,
    onError: (what, err) => log.warn({ err: errorText(err) }, `shutdown: closing ${what} failed`),
  });
  const queue = createImageQueue(settings, 'producer');
  queue.on('error', throttled(log, 'queue'));
  scope.defer('queue', async () => {
    try {
      await queue.close();
    } catch (err) {
      void queue.disconnect().catch(() => {}); // QUIT failed (Redis down): stop reconnecting
      throw err;
    }
  });
  const redis = createRedis(settings, 'producer');
  redis.on('error', throttled(log, 'commands'));
  scope.defer('redis', () => quit(redis));
  const close = () => scope.close();

  try {
    await waitForRedis(config, queue, redis, log);

    // SSE: one QueueEvents (a blocking XREAD connection that waits out outages)
    const queueEvents = new QueueEvents(config.queueName, {
      connection: redisOptions(settings, 'worker'),
      prefix: config.queuePrefix,
    });
    queueEvents.on('error', throttled(log, 'events'));
    scope.defer('queue events', () => queueEvents.close());
    await queueEvents.waitUntilReady();

    const cancels = createRedis(settings, 'subscriber');
    cancels.on('error', throttled(log, 'cancel subscriber'));
    scope.defer('cancel subscriber', () => quit(cancels));
    await cancels.subscribe(cancelChannel(config));

    const hub = createJobEventHub(queueEvents, cancels);
    scope.defer('event streams', () => hub.close());

    const clients = new Map<string, ComfyClient>();
    scope.defer('comfyui clients', () => Promise.all([...clients.values()].map((c) => c.close())));
    const comfy = (url: string) => {
      let c = clients.get(url);
      if (!c) clients.set(url, (c = new ComfyClient(url, { timeoutMs: config.comfyuiTimeoutMs })));
      return c;
    };

    const parser = createBodyParser();
    scope.defer('body parser threads', () => parser.close());

    const store = createJobStore({ queue, redis, settings: config });
    // retention: the clean, then the job list's index sweep (entries of removed jobs)
    const stopCleaner = startRetentionCleaner(
      queue,
      config.retentionMs,
      config.cleanIntervalMs,
      log,
      () => store.sweepIndex(Date.now() - config.retentionMs),
    );
    scope.defer('retention cleaner', stopCleaner);

    const storage = createStorage(config.storage, config.s3);
    scope.defer('storage', () => storage.close());
    scope.defer('storage sweeper', startStorageSweeper(storageSweep(config, storage, redis, log)));
    const rateLimiter = rateLimit(redis, {
      ...config,
      keyPrefix: `${config.queuePrefix}:${config.queueName}:ratelimit`,
    });
    const admit = queueDepthCheck(queue, config.maxQueuedJobs);
    return {
      ...{ queue, redis, queueEvents, store, parser, hub, comfy, storage, close },
      ...{ rateLimit: rateLimiter, admit },
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** QUIT, or drop the socket if Redis does not answer (it may be the thing that is down). */
async function quit(client: IORedis): Promise<void> {
  if (client.status === 'end') return;
  try {
    await withTimeout('QUIT', 1_000, client.quit());
  } catch {
    client.disconnect();
  }
}
