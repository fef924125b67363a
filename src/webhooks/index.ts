import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import type {
  FilesConfig,
  JobPolicyConfig,
  QueueConnectionConfig,
  WebhookSendConfig,
  WorkerRunConfig,
} from '../config/groups';
import { errorText, Scope } from '../lifecycle';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { createImageQueue, type QueueSettings } from '../queue';
import { redisOptions } from '../redis';
import { createDeliveryProcessor } from './deliver';
import {
  createWebhookQueue,
  DEFAULT_DELIVERY,
  DELIVERY_DATA_VERSION,
  DELIVERY_JOB_NAME,
  deliveryJobId,
  deliveryJobOptions,
  webhookQueueName,
  type DeliveryData,
  type DeliveryResult,
  type DeliverySettings,
} from './queue';
import { validateWebhookSecret } from '../webhook-secret';
import { createSigner } from './signing';
import type { LookupAll } from './url-policy';
import type { JobRequest } from '../job/data';

export type { WebhookEvent } from './queue';

/** Each close step's bound beyond a delivery's own timeout. */
const CLOSE_STEP_MS = 5_000;

export type WebhookConfig = QueueConnectionConfig &
  JobPolicyConfig &
  WebhookSendConfig &
  Pick<WorkerRunConfig, 'workerName'> &
  Pick<FilesConfig, 'publicUrl'>;

export interface WebhookWorkerDeps {
  log: Logger;
  metrics?: Metrics;
  /** retry policy, timeouts; defaults in DEFAULT_DELIVERY */
  delivery?: Partial<DeliverySettings>;
  /** DNS resolution for the URL policy (tests); defaults to dns.lookup */
  resolve?: LookupAll;
}

export interface Closable {
  /** safe to call twice */
  close(): Promise<void>;
}

/**
 * What the image processor calls before saving an outcome (ProcessorDeps.notifyFinished):
 * adds the one delivery job of the image job to the durable webhooks queue. Owns its Queue.
 */
export function createNotifyFinished(
  config: WebhookConfig,
  options: { delivery?: Partial<DeliverySettings> } = {},
) {
  const delivery = { ...DEFAULT_DELIVERY, ...options.delivery };
  const queue = createWebhookQueue(
    { ...config, connectionName: 'webhooks-producer' },
    'worker',
    delivery,
  );
  // errors are reported by the connections that notice them first; never crash on one
  queue.on('error', () => undefined);
  let closing: Promise<void> | undefined;
  return {
    queue,
    async notifyFinished(jobId: string, request: JobRequest): Promise<void> {
      if (!request.webhookUrl) return;
      const data: DeliveryData = {
        v: DELIVERY_DATA_VERSION,
        imageJobId: jobId,
        url: request.webhookUrl,
      };
      // a second add (crash and resume) is ignored by BullMQ: one delivery per image job
      await queue.add(DELIVERY_JOB_NAME, data, {
        ...deliveryJobOptions(config, delivery),
        jobId: deliveryJobId(jobId),
      });
    },
    close(): Promise<void> {
      closing ??= queue.close();
      return closing;
    },
  };
}

/**
 * Starts the delivery worker of the webhooks queue. Throws a ConfigError at boot for a bad
 * WEBHOOK_SECRET; without one, deliveries go out unsigned (logged once here).
 */
export async function startWebhookWorker(
  config: WebhookConfig,
  deps: WebhookWorkerDeps,
): Promise<Closable> {
  const { log } = deps;
  if (config.webhookSecret) validateWebhookSecret(config.webhookSecret);
  else {
    log.warn(
      'WEBHOOK_SECRET is not set: webhooks are sent unsigned (set it to a "whsec_<base64>" secret to sign them)',
    );
  }
  const delivery = { ...DEFAULT_DELIVERY, ...deps.delivery };
  const name = `${config.workerName ?? `${hostname()}-${process.pid}`}-webhooks`;
  const settings: QueueSettings = { ...config, connectionName: name };
  const scope = new Scope({
    stepMs: delivery.timeoutMs + CLOSE_STEP_MS,
    onError: (what, err) => log.warn({ err: errorText(err) }, `shutdown: ${what} close failed`),
  });
  const imageQueue = createImageQueue(settings, 'worker');
  imageQueue.on('error', (err) => log.warn({ err: err.message }, 'redis (webhooks) error'));
  scope.defer('webhooks image queue', () => imageQueue.close());

  const delivering = createDeliveryProcessor({
    imageQueue,
    sign: createSigner(config.webhookSecret),
    allowPrivate: config.webhookAllowPrivate,
    publicUrl: config.publicUrl,
    settings: delivery,
    log: log.child({ component: 'webhooks' }),
    metrics: deps.metrics,
    resolve: deps.resolve,
  });
  const worker = new Worker<DeliveryData, DeliveryResult, string>(
    webhookQueueName(config.queueName),
    delivering.deliver,
    {
      connection: redisOptions(settings, 'worker'),
      prefix: config.queuePrefix,
      name,
      concurrency: delivery.concurrency,
      // an attempt is bounded by timeoutMs; the lock only needs to outlive it
      lockDuration: Math.max(30_000, delivery.timeoutMs * 2),
      // deliveries are rare and idempotent: idle cheaply (a new delivery still wakes the
      // blocking wait at once) and check for stalled deliveries every 5 minutes
      drainDelay: 300,
      stalledInterval: 300_000,
      autorun: false,
    },
  );
  worker.on('error', (err) => log.warn({ err: err.message }, 'webhook worker error'));
  scope.defer('webhook connections', () => delivering.close());
  scope.defer('webhook worker', () => worker.close());
  await worker.waitUntilReady();
  void worker.run().catch((err) => log.error({ err }, 'webhook worker stopped with an error'));
  log.info({ queue: webhookQueueName(config.queueName) }, 'webhook deliveries: consuming');

  return { close: () => scope.close() };
}
