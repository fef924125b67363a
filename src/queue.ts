import { Queue, type JobsOptions, type Job } from 'bullmq';
import { v5 as uuidv5 } from 'uuid';
import type { JobData, JobResult } from './job/data';
import type { JobProgress } from './job/progress';
import type { Logger } from './logger';
import { every } from './lifecycle';
import { redisOptions, type RedisSettings } from './redis';

/**
 * The one definition of the image-job queue: its BullMQ job type, default job options
 * (retention), and the periodic clean that makes retention exact. The job's payload,
 * result and progress are declared in `job/`.
 */

export type ImageJob = Job<JobData, JobResult, string, JobProgress>;

export interface QueueSettings extends RedisSettings {
  queueName: string;
  queuePrefix: string;
  retentionMs: number;
  jobAttempts: number;
  retryBackoffMs: number;
}

/** Namespace of the prompt ids this project derives (a fixed random UUID). */
const PROMPT_ID_NAMESPACE = '6b1f3c52-8d47-4f0e-9a35-2c7e1d90b8a4';

/**
 * The ComfyUI prompt id of a job: derived from the job's identity (queue, id and creation
 * time, so a job id reused after retention gets a new one) and its generation (a retried
 * failed job runs again as a new one), never random. A generation has one prompt for its
 * whole life, and a worker that finds no prompt id in the job (its write lost by Redis)
 * computes the same id again and can look for it in ComfyUI before it submits. A
 * canonical lowercase UUID, as the newest ComfyUI requires.
 */
export function promptIdFor(
  queueQualifiedName: string,
  jobId: string,
  timestamp: number,
  generation = 0,
): string {
  const g = generation > 0 ? `:${generation}` : '';
  return uuidv5(`${queueQualifiedName}:${jobId}:${timestamp}${g}`, PROMPT_ID_NAMESPACE);
}

/** Job name used for every image job (the name is not otherwise meaningful). */
export const IMAGE_JOB_NAME = 'image';

/** Suffix of the pub/sub channel that carries cancel requests to workers. */
export const CANCEL_CHANNEL_SUFFIX = 'cancel';
/** Field on the BullMQ job hash that marks a requested cancel (durable part of the signal). */
export const CANCEL_FIELD = 'cancelRequested';
/** Field on the job hash that holds the workflow (JSON) of jobs the API adds; removed on success. */
export const WORKFLOW_FIELD = 'workflow';

export function cancelChannel(s: Pick<QueueSettings, 'queuePrefix' | 'queueName'>): string {
  return `${s.queuePrefix}:${s.queueName}:${CANCEL_CHANNEL_SUFFIX}`;
}

export function jobKey(s: Pick<QueueSettings, 'queuePrefix' | 'queueName'>, jobId: string): string {
  return `${s.queuePrefix}:${s.queueName}:${jobId}`;
}

/** BullMQ's age-based removal (seconds), for the queue's job options and the worker alike. */
export function retentionKeep(s: Pick<QueueSettings, 'retentionMs'>) {
  return { age: Math.max(1, Math.ceil(s.retentionMs / 1000)) };
}

export function defaultJobOptions(s: QueueSettings): JobsOptions {
  const { age } = retentionKeep(s);
  return {
    // retries are for transient ComfyUI outages only; permanent failures are UnrecoverableError
    attempts: s.jobAttempts,
    backoff: { type: 'exponential', delay: s.retryBackoffMs },
    removeOnComplete: { age },
    removeOnFail: { age },
  };
}

export function createImageQueue(s: QueueSettings, role: 'producer' | 'worker' = 'producer') {
  return new Queue<JobData, JobResult, string>(s.queueName, {
    connection: redisOptions(s, role),
    prefix: s.queuePrefix,
    defaultJobOptions: defaultJobOptions(s),
  });
}

export type ImageQueue = ReturnType<typeof createImageQueue>;

/**
 * BullMQ's age-based removal is lazy (it runs only when another job finishes), so a
 * periodic clean makes "gone after RETENTION_MS" hold even when traffic stops; `afterClean`
 * (the job list's index sweep) runs after each clean. Returns a stop function. Errors
 * (Redis down) are reported and retried next tick.
 */
export function startRetentionCleaner(
  queue: Pick<ImageQueue, 'clean'>,
  retentionMs: number,
  intervalMs: number,
  log: Pick<Logger, 'warn'>,
  afterClean?: () => Promise<unknown>,
): () => void {
  return every(
    intervalMs,
    'retention clean',
    async () => {
      for (const type of ['completed', 'failed'] as const) {
        // clean in batches until nothing older than retention is left
        while ((await queue.clean(retentionMs, 1000, type)).length === 1000);
      }
      await afterClean?.();
    },
    log,
  );
}
