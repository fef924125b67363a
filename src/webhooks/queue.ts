import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { JobView } from '../job/view';
import { retentionKeep, type QueueSettings } from '../queue';
import { redisOptions } from '../redis';

/**
 * The one definition of the webhook-delivery queue: name, payload, result and job options.
 * One delivery job per image job (`wh-<imageJobId>`), added before the image job's outcome is
 * saved; BullMQ ignores a second add with the same id, so a crash and resume sends nothing twice.
 */

/** Bump when DeliveryData changes shape. */
export const DELIVERY_DATA_VERSION = 1;

export const DELIVERY_JOB_NAME = 'webhook';

export type WebhookEventType = 'job.completed' | 'job.failed' | 'job.cancelled';

/** The JSON body POSTed to the receiver (Standard Webhooks shape). */
export interface WebhookEvent {
  type: WebhookEventType;
  /** when the job finished (ISO 8601) */
  timestamp: string;
  /** the public job view, as `GET /v1/jobs/:id` answers it */
  data: JobView;
}

export interface DeliveryData {
  v: number;
  imageJobId: string;
  url: string;
  /** set once the image job has settled; retries resend it even after retention removed the job */
  event?: WebhookEvent;
}

export interface DeliveryResult {
  status: number;
  attempt: number;
  deliveredAt: string;
}

export type DeliveryJob = Job<DeliveryData, DeliveryResult, string>;

/** Retry policy of a delivery. */
export interface DeliverySettings {
  /** attempts per delivery. @defaultValue 15 */
  attempts: number;
  /** first retry delay, doubled per attempt (15 attempts ≈ 23 h in all). @defaultValue 5000 */
  backoffMs: number;
  /** one attempt's budget: connect, send, answer. @defaultValue 10000 */
  timeoutMs: number;
  /** first re-check delay while the image job is still saving its outcome. @defaultValue 200 */
  recheckMs: number;
  /** deliveries in flight per worker process. @defaultValue 8 */
  concurrency: number;
}

export const DEFAULT_DELIVERY: DeliverySettings = {
  attempts: 15,
  backoffMs: 5_000,
  timeoutMs: 10_000,
  recheckMs: 200,
  concurrency: 8,
};

/**
 * The webhooks queue of an image queue: `comfyui-jobs` → `comfyui-webhooks`, any other
 * name → `<name>-webhooks` (so queues sharing a prefix keep their deliveries apart).
 */
export function webhookQueueName(imageQueueName: string): string {
  return `${imageQueueName.replace(/-jobs$/, '')}-webhooks`;
}

/** The deterministic delivery job id of an image job (never an integer, no ':'). */
export function deliveryJobId(imageJobId: string): string {
  return `wh-${imageJobId}`;
}

export type WebhookQueueSettings = Pick<
  QueueSettings,
  | 'redisUrl'
  | 'redisFamily'
  | 'redisCluster'
  | 'connectionName'
  | 'queueName'
  | 'queuePrefix'
  | 'retentionMs'
>;

export function deliveryJobOptions(
  s: Pick<QueueSettings, 'retentionMs'>,
  d: Pick<DeliverySettings, 'attempts' | 'backoffMs'> = DEFAULT_DELIVERY,
): JobsOptions {
  return {
    attempts: d.attempts,
    backoff: { type: 'exponential', delay: d.backoffMs, jitter: 0.2 },
    removeOnComplete: retentionKeep(s),
    removeOnFail: retentionKeep(s),
  };
}

/** The webhooks queue (same prefix as the image queue); also what Bull Board shows. */
export function createWebhookQueue(
  s: WebhookQueueSettings,
  role: 'producer' | 'worker' = 'producer',
  d: Pick<DeliverySettings, 'attempts' | 'backoffMs'> = DEFAULT_DELIVERY,
) {
  return new Queue<DeliveryData, DeliveryResult, string>(webhookQueueName(s.queueName), {
    connection: redisOptions(s, role),
    prefix: s.queuePrefix,
    defaultJobOptions: deliveryJobOptions(s, d),
  });
}

export type WebhookQueue = ReturnType<typeof createWebhookQueue>;
