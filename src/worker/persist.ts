import type IORedis from 'ioredis';
import type { Cluster } from 'ioredis';
import {
  CANCEL_FIELD,
  WORKFLOW_FIELD,
  jobKey,
  type JobData,
  type JobProgress,
  type JobResult,
  type QueueSettings,
  type Workflow,
} from '../queue';

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
 * meta hash; all share the queue's hash tag (Redis Cluster safe).
 */
const LOCK_CHECK = `
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= "" and redis.call("GET", KEYS[3]) ~= ARGV[1] then return -2 end
`;

/** BullMQ's updateProgress-3.lua: the field and a `progress` event (trimmed like BullMQ does). */
const WRITE_PROGRESS = `
local function writeProgress(progress, jobId)
  local maxEvents = redis.call("HGET", KEYS[5], "opts.maxLenEvents")
  if not maxEvents then
    maxEvents = 10000
    redis.call("HSET", KEYS[5], "opts.maxLenEvents", maxEvents)
  end
  redis.call("HSET", KEYS[1], "progress", progress)
  redis.call("XADD", KEYS[4], "MAXLEN", "~", maxEvents, "*", "event", "progress", "jobId", jobId, "data", progress)
end
`;

/**
 * ARGV: token, data, progress, log line, cancel field, return value, job id, failed reason.
 * The return value is written with the outcome, so a worker that dies before BullMQ's
 * moveToFinished finds the outputs in the job (BullMQ writes the same value again); the
 * workflow field goes with it (a failed job keeps its workflow until retention).
 */
const PERSIST_LUA = `${LOCK_CHECK}${WRITE_PROGRESS}
redis.call("HSET", KEYS[1], "data", ARGV[2])
if ARGV[3] ~= "" then writeProgress(ARGV[3], ARGV[7]) end
if ARGV[4] ~= "" then redis.call("RPUSH", KEYS[2], ARGV[4]) end
if ARGV[6] ~= "" then
  redis.call("HSET", KEYS[1], "returnvalue", ARGV[6])
  redis.call("HDEL", KEYS[1], "${WORKFLOW_FIELD}")
end
if ARGV[8] ~= "" then redis.call("HSET", KEYS[1], "failedReason", ARGV[8]) end
if redis.call("HEXISTS", KEYS[1], ARGV[5]) == 1 then return 1 end
return 0
`;

/** ARGV: token, progress, job id, cancel field; answers whether a cancel was requested. */
const PROGRESS_LUA = `${LOCK_CHECK}${WRITE_PROGRESS}
writeProgress(ARGV[2], ARGV[3])
if redis.call("HEXISTS", KEYS[1], ARGV[4]) == 1 then return 1 end
return 0
`;

type Script = (
  k1: string,
  k2: string,
  k3: string,
  k4: string,
  k5: string,
  ...argv: string[]
) => Promise<number>;
type Client = (IORedis | Cluster) & { comfyqPersist?: Script; comfyqProgress?: Script };

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
  const client = redis as Client;
  client.defineCommand('comfyqPersist', { numberOfKeys: 5, lua: PERSIST_LUA });
  client.defineCommand('comfyqProgress', { numberOfKeys: 5, lua: PROGRESS_LUA });
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
      const r = await client.comfyqPersist!(
        ...keys(jobId),
        token ?? '',
        JSON.stringify(data),
        opts.progress ? JSON.stringify(opts.progress) : '',
        opts.log ?? '',
        CANCEL_FIELD,
        opts.result ? JSON.stringify(opts.result) : '',
        jobId,
        opts.failedReason ?? '',
      );
      check(r, jobId);
      return { cancelRequested: r === 1 };
    },
    async readWorkflow(jobId) {
      const text = await client.hget(keys(jobId)[0], WORKFLOW_FIELD);
      return text === null ? null : (JSON.parse(text) as Workflow);
    },
    async progress(jobId, token, progress) {
      const r = await client.comfyqProgress!(
        ...keys(jobId),
        token ?? '',
        JSON.stringify(progress),
        jobId,
        CANCEL_FIELD,
      );
      check(r, jobId);
      return { cancelRequested: r === 1 };
    },
  };
}
