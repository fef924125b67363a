import { Queue, type JobsOptions, type Job } from 'bullmq';
import { v5 as uuidv5 } from 'uuid';
import { initialState, type JobOutput, type JobState } from './job/state';
import type { Logger } from './logger';
import { every } from './lifecycle';
import { redisOptions, type RedisSettings } from './redis';

/**
 * The one definition of the image-job queue: payload and result types, the data version,
 * default job options (retention), and the periodic clean that makes retention exact.
 */

/** Bump when JobData changes shape; workers refuse data of an unknown version. */
export const JOB_DATA_VERSION = 1;

/** A ComfyUI workflow in API format: `{ nodeId: { class_type, inputs, _meta? } }`. */
export type Workflow = Record<
  string,
  { class_type: string; inputs: Record<string, unknown>; [k: string]: unknown }
>;

export interface JobRequest {
  jobType: string;
  userId?: string;
  webhookUrl?: string;
  idempotencyKey?: string;
  metadata?: Record<string, unknown>;
  /** the name of the API key that submitted the job, when keys are scoped (API_KEYS name:key) */
  owner?: string;
}

/**
 * A file the workflow reads (DESIGN "Media in"): an upload in storage, or a URL the worker
 * fetches (into `jobs/<id>/inputs/<i>`; size, sha256 and type are recorded then).
 */
export type JobInput =
  | { name: string; upload: string; size: number; sha256: string; contentType: string }
  | { name: string; url: string; size?: number; sha256?: string; contentType?: string };

export interface JobData {
  v: number;
  /**
   * null for jobs the API adds: their workflow is the job hash's own WORKFLOW_FIELD, so no
   * read of the job (view, events, cancel, state writes) carries it. Jobs added before that
   * (or by tests) may hold it here; workers read either (`readWorkflow`).
   */
  workflow: Workflow | null;
  /** the workflow's node count (progress needs it without reading the workflow) */
  nodes?: number;
  request: JobRequest;
  state: JobState;
  /** input files, in the order given (absent: none) */
  inputs?: JobInput[];
}

/** What Bull Board's progress tab and the API's `progress` show. */
export interface JobProgress {
  percent: number;
  value?: number;
  max?: number;
  node?: string;
  queuePosition?: number;
}

export interface JobResult {
  outputs: JobOutput[];
}

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

/** The data of a new job: what the API enqueues. */
export function newJobData(
  workflow: Workflow | null,
  request: JobRequest,
  now: number,
  inputs?: JobInput[],
): JobData {
  const data: JobData = { v: JOB_DATA_VERSION, workflow, request, state: initialState(now) };
  if (inputs && inputs.length > 0) data.inputs = inputs;
  return data;
}
