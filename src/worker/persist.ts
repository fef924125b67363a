import type IORedis from 'ioredis';
import type { Cluster } from 'ioredis';
import { CANCEL_FIELD, WORKFLOW_FIELD, jobKey, type QueueSettings } from '../queue';
import { defineScripts, redisScript } from '../scripts';
import type { JobData, JobResult, Workflow } from '../job/data';
import type { JobProgress } from '../job/progress';

/**
 * Every write the processor makes to its job, each one round trip and each checked against
 * the job's BullMQ lock: a worker that lost the job (partition, long stall) can never
 * overwrite what the worker that now owns it saved, even when its write arrives late.
 *
 * - persist: the job's data (JobState), optionally its progress, a Bull Board log line and
 *   its return value; answers whether a cancel was requested (so the pickup check costs
 *   nothing).
 * - progress: BullMQ's updateProgress (hash field + `progress` event), lock-checked; also
 *   answers whether a cancel was requested.
 * Keys are the job hash, its `:logs` list, its `:lock` and the queue's events stream and
 * meta hash; all share the queue's hash tag (Redis Cluster safe). The scripts are
 * src/scripts/persist-5.lua and progress-5.lua.
 */
const PERSIST = redisScript('persist-5');
const PROGRESS = redisScript('progress-5');

/** The job is no longer this worker's: stop following it and write nothing more. */
export class LockLostError extends Error {
  constructor(jobId: string) {
    super(`stopped following job ${jobId}: its lock is held by another worker now (or expired)`);
    this.name = 'LockLostError';
  }
}

export interface PersistOptions {
  /** written like updateProgress (field and event), so live views see the transition */
  progress?: JobProgress;
  /** a Bull Board log line */
  log?: string;
  /** the job's return value, written with its outcome */
  result?: JobResult;
  /** a failure's reason, written with its outcome as BullMQ will write it (failedReasonOf) */
  failedReason?: string;
}

export interface JobWriter {
  persist(
    jobId: string,
    token: string | undefined,
    data: JobData,
    opts?: PersistOptions,
  ): Promise<{ cancelRequested: boolean }>;
  progress(
    jobId: string,
    token: string | undefined,
    progress: JobProgress,
  ): Promise<{ cancelRequested: boolean }>;
  /** the workflow of a job the API added (its own hash field), parsed; null if absent */
  readWorkflow(jobId: string): Promise<Workflow | null>;
}

export function createJobWriter(
  redis: IORedis | Cluster,
  s: Pick<QueueSettings, 'queuePrefix' | 'queueName'>,
): JobWriter {
  const scripts = defineScripts(redis, { persist: PERSIST, progress: PROGRESS });
  const keys = (jobId: string) => {
    const key = jobKey(s, jobId);
    const queueKey = `${s.queuePrefix}:${s.queueName}`;
    return [key, `${key}:logs`, `${key}:lock`, `${queueKey}:events`, `${queueKey}:meta`] as const;
  };
  const check = (r: number, jobId: string) => {
    if (r === -1) throw new Error(`job ${jobId} no longer exists in Redis (removed while it ran?)`);
    if (r === -2) throw new LockLostError(jobId);
  };
  return {
    async persist(jobId, token, data, opts = {}) {
      const r = (await scripts.persist(
        ...keys(jobId),
        token ?? '',
        JSON.stringify(data),
        opts.progress ? JSON.stringify(opts.progress) : '',
        opts.log ?? '',
        CANCEL_FIELD,
        opts.result ? JSON.stringify(opts.result) : '',
        jobId,
        opts.failedReason ?? '',
        WORKFLOW_FIELD,
      )) as number;
      check(r, jobId);
      return { cancelRequested: r === 1 };
    },
    async readWorkflow(jobId) {
      const text = await redis.hget(keys(jobId)[0], WORKFLOW_FIELD);
      return text === null ? null : (JSON.parse(text) as Workflow);
    },
    async progress(jobId, token, progress) {
      const r = (await scripts.progress(
        ...keys(jobId),
        token ?? '',
        JSON.stringify(progress),
        jobId,
        CANCEL_FIELD,
      )) as number;
      check(r, jobId);
      return { cancelRequested: r === 1 };
    },
  };
}
