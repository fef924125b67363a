import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Worker, type JobJson, type RedisQueueBackend } from 'bullmq';
import type IORedis from 'ioredis';
import type { Server } from 'node:http';
import { fanOutSink, type AnalyticsSink } from '../analytics';
import { metricsSink, registerInstanceHealth, serveMetrics, type Metrics } from '../metrics';
import { ComfyPool } from '../comfy/pool';
import { SlotLeases, slotsFreedChannel } from '../comfy/slots';
import type {
  ComfyConfig,
  FairConfig,
  FilesConfig,
  JobPolicyConfig,
  ProcessConfig,
  QueueConnectionConfig,
  WorkerRunConfig,
} from '../config/groups';
import { errorText, Scope } from '../lifecycle';
import type { Logger } from '../logger';
import { CANCEL_FIELD, cancelChannel, jobKey, retentionKeep } from '../queue';
import { createRedis, redisOptions, warnIfEvicting } from '../redis';
import { createFairAdmission } from '../fair/admission';
import { createJobWriter } from './persist';
import { createLockProver } from './fence';
import { createStorage } from '../storage';
import { createUrlFetcher } from './fetch-url';
import type { LookupAll } from '../webhooks/url-policy';
import { ABORT, createProcessor, type FaultPoint, type ProcessorDeps } from './processor';
import type { JobData, JobResult } from '../job/data';
import type { JobProgress } from '../job/progress';

export type WorkerConfig = QueueConnectionConfig &
  JobPolicyConfig &
  ComfyConfig &
  WorkerRunConfig &
  FilesConfig &
  FairConfig &
  Pick<ProcessConfig, 'metricsPort' | 'shutdownTimeoutMs'>;

export interface WorkerDeps {
  log: Logger;
  analytics: AnalyticsSink;
  /** when given, job events feed it and it is served on METRICS_PORT */
  metrics?: Metrics;
  /** enqueues a webhook delivery for jobs that have a webhookUrl (src/webhooks) */
  notifyFinished?: ProcessorDeps['notifyFinished'];
  fault?: (point: FaultPoint) => void;
  /** DNS resolution of input URLs (tests); defaults to dns.lookup */
  resolve?: LookupAll;
}

/** A started image worker (startImageWorker resolves once it is consuming jobs). */
export interface ImageWorker {
  /** the worker's name, shown as processedBy in Bull Board */
  readonly name: string;
  /** the port /metrics is served on (METRICS_PORT, or the one picked for 0), when served */
  readonly metricsPort?: number;
  /** stop taking jobs, hand active jobs back, close every connection; safe to call twice */
  close(): Promise<void>;
}

/**
 * BullMQ parses a job's data before any processor runs; data that is not JSON would throw
 * there on every take, so the job would stall and come back for ever. Such a job is handed
 * to the processor with a marker instead, which fails it once with `invalid_job_data`
 * (the stored data is left as it is).
 */
class ImageBullWorker extends Worker<JobData, JobResult, string, RedisQueueBackend, JobProgress> {
  protected override createJob(data: JobJson, jobId: string) {
    try {
      return super.createJob(data, jobId);
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      return super.createJob(
        { ...data, data: JSON.stringify({ unparseable: err.message }) },
        jobId,
      );
    }
  }
}

/**
 * Wires a BullMQ Worker to the processor: ComfyUI clients, the cancel channel, lock-loss
 * handling and BullMQ's age removal of finished jobs (the periodic retention clean is the
 * API's, so an idle worker costs only a few Redis commands a minute). Owns every
 * connection it opens and closes them in reverse order.
 */
/** The ComfyUI instances this worker places prompts on, with the slot leases shared by all workers. */
function comfyPool(config: WorkerConfig, deps: WorkerDeps, commands: IORedis, clientId: string) {
  const { log } = deps;
  const slots = new SlotLeases(
    commands,
    {
      queuePrefix: config.queuePrefix,
      queueName: config.queueName,
      slotsPerInstance: config.workerConcurrency,
      leaseMs: config.lockDurationMs,
    },
    log,
  );
  const pool = new ComfyPool({
    urls: config.comfyuiUrls,
    slots,
    timeoutMs: config.comfyuiTimeoutMs,
    healthIntervalMs: config.healthIntervalMs,
    clientId,
    websocket: config.comfyuiWebsocket,
    log,
    observe: deps.metrics
      ? (url) => (route, ms, outcome) =>
          deps.metrics!.comfyRequests.observe({ comfyui_instance: url, route, outcome }, ms / 1000)
      : undefined,
  });
  return { slots, pool };
}

/** The job processor with what it writes through: storage, the URL fetcher, the fence. */
function jobProcessor(
  config: WorkerConfig,
  deps: WorkerDeps,
  scope: Scope,
  commands: IORedis,
  pool: ComfyPool,
  clientId: string,
) {
  const { log } = deps;
  const storage = createStorage(config.storage, config.s3);
  const fetcher = createUrlFetcher({
    allowPrivate: config.inputUrlAllowPrivate,
    timeoutMs: config.inputUrlTimeoutMs,
    resolve: deps.resolve,
  });
  scope.defer('storage', () => storage.close());
  scope.defer('input fetcher', () => fetcher.close());
  return createProcessor({
    media: { storage, fetcher, maxBytes: config.uploadMaxBytes },
    settings: config,
    pool,
    clientId,
    analytics: deps.metrics
      ? fanOutSink(deps.analytics, metricsSink(deps.metrics))
      : deps.analytics,
    log,
    writer: createJobWriter(commands, config),
    proveLock: createLockProver(commands, config, () => deps.fault?.('fence-sent')),
    isCancelRequested: async (jobId) =>
      (await commands.hget(jobKey(config, jobId), CANCEL_FIELD)) !== null,
    fault: deps.fault,
    notifyFinished: deps.notifyFinished,
  });
}

export async function startImageWorker(
  config: WorkerConfig,
  deps: WorkerDeps,
): Promise<ImageWorker> {
  const { log } = deps;
  const name = config.workerName ?? `${hostname()}-${process.pid}`;
  const clientId = `comfyui-queue-${name}-${randomBytes(4).toString('hex')}`;
  const settings = { ...config, connectionName: `worker-${name}` };

  const scope = new Scope({
    stepMs: config.shutdownTimeoutMs,
    onError: (what, err) => log.warn({ err: errorText(err) }, `shutdown: closing ${what} failed`),
  });
  const commands = createRedis(settings, 'worker');
  commands.on('error', (err) => log.warn({ err: err.message }, 'redis (commands) error'));
  scope.defer('commands', () => commands.quit());
  const subscriber = createRedis(settings, 'subscriber');
  subscriber.on('error', (err) => log.warn({ err: err.message }, 'redis (subscriber) error'));
  scope.defer('subscriber', () => subscriber.quit());
  const { slots, pool } = comfyPool(config, deps, commands, clientId);
  scope.defer('comfyui clients', () => pool.close());

  const processor = jobProcessor(config, deps, scope, commands, pool, clientId);

  // USER_MAX_ACTIVE: admission before each job, slots freed as jobs end (src/fair)
  const admission =
    config.userMaxActive > 0
      ? createFairAdmission(commands, config, config.stalledIntervalMs, log)
      : undefined;
  const worker = createBullWorker(
    config,
    settings,
    name,
    admission ? admission.wrap(processor) : processor,
    log,
  );
  if (admission) {
    scope.defer('fair sweep', () => admission.stop());
    worker.on('completed', (job) => admission.onEnded(job));
    worker.on('failed', (job) => admission.onEnded(job));
  }
  let metricsServer: Server | undefined;
  scope.defer('worker', async () => {
    // hand active jobs back at once (they resume elsewhere), then stop; the sockets close
    // first, so none closes after the next worker opened one under the same client id
    pool.closeSockets();
    worker.cancelAllJobs(ABORT.shutdown);
    await worker.close();
    metricsServer?.close();
  });

  const freedChannel = slotsFreedChannel(config);
  await subscriber.subscribe(cancelChannel(config), freedChannel);
  subscriber.on('message', (channel: string, message: string) => {
    if (channel === freedChannel) return slots.notifyFreed();
    if (worker.cancelJob(message, ABORT.cancel)) log.info({ jobId: message }, 'cancel requested');
  });

  if (deps.metrics) {
    // the queue depth is the API's to report; a worker reports its own jobs and instances
    registerInstanceHealth(deps.metrics, config.comfyuiUrls, () => pool.healthyUrls());
    metricsServer = await serveMetrics(deps.metrics, config.metricsPort, log);
  }

  await warnIfEvicting(commands, log);
  await worker.waitUntilReady();
  void worker.run().catch((err) => log.error({ err }, 'worker stopped with an error'));
  log.info(
    {
      name,
      queue: config.queueName,
      concurrency: config.workerConcurrency * config.comfyuiUrls.length,
      comfyui: config.comfyuiUrls,
    },
    'worker ready',
  );

  const address = metricsServer?.address();
  return {
    name,
    metricsPort: address && typeof address === 'object' ? address.port : undefined,
    close: () => scope.close().then(() => log.info('worker stopped')),
  };
}

/** The BullMQ Worker of the image queue, with its events logged and lost locks handled. */
function createBullWorker(
  config: WorkerConfig,
  settings: WorkerConfig & { connectionName: string },
  name: string,
  processor: ReturnType<typeof createProcessor>,
  log: Logger,
): ImageBullWorker {
  const worker = new ImageBullWorker(config.queueName, processor, {
    connection: redisOptions(settings, 'worker'),
    prefix: config.queuePrefix,
    name,
    autorun: false,
    concurrency: config.workerConcurrency * config.comfyuiUrls.length,
    lockDuration: config.lockDurationMs,
    stalledInterval: config.stalledIntervalMs,
    // the processor fails a job past MAX_STALLED_COUNT itself (and removes its prompt);
    // BullMQ's own limit, one higher, is only a safety net
    maxStalledCount: config.maxStalledCount + 1,
    drainDelay: config.drainDelayS,
    removeOnComplete: retentionKeep(config),
    removeOnFail: retentionKeep(config),
  });
  worker.on('error', (err) => log.warn({ err: err.message }, 'worker error'));
  worker.on('failed', (job, err) =>
    log.info(
      {
        jobId: job?.id,
        promptId: job?.data?.state?.promptId,
        err: err.message,
        attemptsMade: job?.attemptsMade,
      },
      'job attempt failed',
    ),
  );
  worker.on('completed', (job) =>
    log.info({ jobId: job.id, promptId: job.data.state.promptId }, 'job completed'),
  );
  worker.on('stalled', (jobId) =>
    log.warn({ jobId }, 'job stalled: its worker died; it is back in the queue'),
  );
  // A worker that could not renew a lock (partition, long Redis outage) stops following the
  // job, so it never races the worker that now owns it.
  worker.on('lockRenewalFailed', (jobIds: string[]) => {
    for (const id of jobIds) {
      log.warn({ jobId: id }, 'lock renewal failed: stopping this worker’s copy of the job');
      worker.cancelJob(id, ABORT.lockLost);
    }
  });

  return worker;
}
