import type IORedis from 'ioredis';
import type { Cluster } from 'ioredis';
import { CANCEL_FIELD, jobKey, type JobData, type JobProgress, type QueueSettings } from '../queue';

/**
 * One round trip per JobState transition: the job's data, optionally its progress, and
 * its Bull Board log line are written by one Lua script, which also answers whether a
 * cancel was requested (so the pickup check costs nothing extra). Keys are the BullMQ job
 * hash and its `:logs` list, which share a hash slot (Redis Cluster safe).
 */
const PERSIST_LUA = `
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
redis.call("HSET", KEYS[1], "data", ARGV[1])
if ARGV[2] ~= "" then redis.call("HSET", KEYS[1], "progress", ARGV[2]) end
if ARGV[3] ~= "" then redis.call("RPUSH", KEYS[2], ARGV[3]) end
if redis.call("HEXISTS", KEYS[1], ARGV[4]) == 1 then return 1 end
return 0
`;

type Client = (IORedis | Cluster) & {
  comfyqPersist?: (
    k1: string,
    k2: string,
    data: string,
    progress: string,
    log: string,
    field: string,
  ) => Promise<number>;
};

export interface PersistOptions {
  progress?: JobProgress;
  log?: string;
}

export type Persist = (
  jobId: string,
  data: JobData,
  opts?: PersistOptions,
) => Promise<{ cancelRequested: boolean }>;

export function createPersist(
  redis: IORedis | Cluster,
  s: Pick<QueueSettings, 'queuePrefix' | 'queueName'>,
): Persist {
  const client = redis as Client;
  client.defineCommand('comfyqPersist', { numberOfKeys: 2, lua: PERSIST_LUA });
  return async (jobId, data, opts = {}) => {
    const key = jobKey(s, jobId);
    const r = await client.comfyqPersist!(
      key,
      `${key}:logs`,
      JSON.stringify(data),
      opts.progress ? JSON.stringify(opts.progress) : '',
      opts.log ?? '',
      CANCEL_FIELD,
    );
    if (r === -1) throw new Error(`job ${jobId} no longer exists in Redis (removed while it ran?)`);
    return { cancelRequested: r === 1 };
  };
}
