import { createHash } from 'node:crypto';
import type IORedis from 'ioredis';
import {
  CANCEL_FIELD,
  IMAGE_JOB_NAME,
  cancelChannel,
  jobKey,
  newJobData,
  type ImageJob,
  type ImageQueue,
  type JobData,
  type JobRequest,
  type Workflow,
} from '../queue';
import { QueueUnavailableError } from './errors';
import {
  publicStatus,
  snapshotOf,
  type BullState,
  type JobSnapshot,
  type PublicStatus,
} from './job-view';
import { DEFAULT_JOB_TYPE, JOB_ID_PATTERN, type CreateJobBody } from './schemas';

/**
 * Everything the API reads and writes in Redis, each operation bounded by a timeout so a
 * dead Redis becomes a 503 `queue_unavailable` within 2 s instead of a hanging request.
 */

export interface JobStoreSettings {
  queuePrefix: string;
  queueName: string;
  /** the whole operation's budget; the contract promises an answer within 2 s */
  redisTimeoutMs?: number;
}

export interface JobStoreDeps {
  queue: ImageQueue;
  /** a fail-fast ('producer') connection for reads, the cancel mark and PING */
  redis: IORedis;
  settings: JobStoreSettings;
  now?: () => number;
}

export type EnqueueResult = { id: string; created: boolean; status: PublicStatus };
export type CancelResult =
  | { outcome: 'cancelled' }
  | { outcome: 'not_found' }
  | { outcome: 'already_finished'; status: PublicStatus };

/**
 * Sets the durable cancel mark only on a job that exists and has not finished, atomically
 * (no stray hash for a job that retention just removed, one winner among concurrent cancels).
 * Returns 1 set, 0 already marked, -1 no such job, -2 finished.
 */
const CANCEL_MARK_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'finishedOn') == 1 then return -2 end
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])`;

const CONNECTION_ERROR =
  /Connection is closed|Stream isn't writeable|max retries per request|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|Socket closed|LOADING|READONLY|CLUSTERDOWN|TRYAGAIN|OOM command not allowed/i;

/** Errors that mean "Redis is not reachable or not serving", as ioredis and BullMQ word them. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return (
    err.name === 'MaxRetriesPerRequestError' || CONNECTION_ERROR.test(`${code} ${err.message}`)
  );
}

/** The deterministic job id of an idempotency key, scoped by user (no ':' and never an integer). */
export function idempotentJobId(key: string, userId: string | undefined): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([userId ?? null, key]))
    .digest('hex');
  return `idem-${digest}`;
}

export function createJobStore(deps: JobStoreDeps) {
  const { queue, redis, settings } = deps;
  const now = deps.now ?? Date.now;
  const budgetMs = settings.redisTimeoutMs ?? 1_500;

  /** Runs a Redis operation within the budget; any failure means the queue is unavailable. */
  async function guard<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const work = fn();
    work.catch(() => {}); // a late rejection after the timeout must not go unhandled
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new QueueUnavailableError(`${operation} within ${budgetMs} ms`)),
        budgetMs,
      );
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (err instanceof QueueUnavailableError) throw err;
      // a bug or corrupted data stays a 500 (logged); a connection problem is a 503
      if (redis.status !== 'ready' || isConnectionError(err)) {
        throw new QueueUnavailableError(operation, { cause: err });
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async function queuePosition(id: string, state: BullState): Promise<number | undefined> {
    // BullMQ takes plain jobs from the right end of `wait`, then prioritized ones by score
    if (state === 'waiting') {
      const [len, idx] = await Promise.all([
        redis.llen(queue.keys.wait),
        redis.lpos(queue.keys.wait, id),
      ]);
      return idx === null ? undefined : Math.max(0, len - 1 - idx);
    }
    if (state === 'prioritized') {
      const [len, rank] = await Promise.all([
        redis.llen(queue.keys.wait),
        redis.zrank(queue.keys.prioritized, id),
      ]);
      return rank === null ? undefined : len + rank;
    }
    return undefined;
  }

  async function snapshot(id: string): Promise<JobSnapshot | null> {
    const [job, mark] = await Promise.all([
      queue.getJob(id) as Promise<ImageJob | undefined>,
      redis.hget(jobKey(settings, id), CANCEL_FIELD),
    ]);
    if (!job) return null;
    const bullState = await job.getState();
    if (bullState === 'unknown') return null;
    const s: JobSnapshot = {
      ...snapshotOf(job, bullState as BullState),
      cancelRequestedAt: mark ?? undefined,
    };
    if (mark === null) s.queuePosition = await queuePosition(id, s.bullState);
    return s;
  }

  return {
    /** The job's snapshot, or null for unknown (and malformed: never sent to Redis) ids. */
    read(id: string): Promise<JobSnapshot | null> {
      if (!JOB_ID_PATTERN.test(id)) return Promise.resolve(null);
      return guard('a job read', () => snapshot(id));
    },

    /**
     * Adds the job. With an idempotency key the job id is derived from it: a second request
     * finds the stored job (re-read with getJob: BullMQ ignores a duplicate id silently and
     * its add() returns data it never stored).
     */
    enqueue(body: CreateJobBody): Promise<EnqueueResult> {
      return guard('an enqueue', async () => {
        const request: JobRequest = { jobType: body.jobType ?? DEFAULT_JOB_TYPE };
        if (body.userId !== undefined) request.userId = body.userId;
        if (body.webhookUrl !== undefined) request.webhookUrl = body.webhookUrl;
        if (body.idempotencyKey !== undefined) request.idempotencyKey = body.idempotencyKey;
        if (body.metadata !== undefined) request.metadata = body.metadata;
        const at = now();
        const data = newJobData(body.workflow as Workflow, request, at);
        const jobId = body.idempotencyKey
          ? idempotentJobId(body.idempotencyKey, body.userId)
          : undefined;

        if (jobId) {
          const existing = await snapshot(jobId);
          if (existing) return { id: jobId, created: false, status: publicStatus(existing) };
        }
        const added = await queue.add(IMAGE_JOB_NAME, data, {
          ...(jobId ? { jobId } : {}),
          ...(body.priority ? { priority: body.priority } : {}),
          timestamp: at,
        });
        const id = added.id!;
        if (!jobId) return { id, created: true, status: 'queued' };
        // a concurrent request with the same key may have won the race: trust what is stored
        const stored = await snapshot(id);
        if (!stored) return { id, created: true, status: 'queued' };
        // (two identical requests within the same millisecond are indistinguishable: both 202)
        const storedRequest = (stored.data as Partial<JobData> | null)?.request;
        const ours =
          stored.timestamp === at && JSON.stringify(storedRequest) === JSON.stringify(request);
        return { id, created: ours, status: publicStatus(stored) };
      });
    },

    /**
     * Requests a cancel: the durable mark on the job hash, then a message on the cancel
     * channel for the worker that holds it. A job waiting in the queue is moved to the
     * front (or promoted, if delayed) so a worker fails it as `cancelled` at pickup, which
     * also removes a prompt it may still have in ComfyUI.
     */
    cancel(id: string): Promise<CancelResult> {
      if (!JOB_ID_PATTERN.test(id)) return Promise.resolve({ outcome: 'not_found' });
      return guard('a cancel', async () => {
        const before = await snapshot(id);
        if (!before) return { outcome: 'not_found' };
        const status = publicStatus(before);
        if (status === 'completed' || status === 'failed' || status === 'cancelled') {
          return { outcome: 'already_finished', status };
        }
        const set = (await redis.eval(
          CANCEL_MARK_LUA,
          1,
          jobKey(settings, id),
          CANCEL_FIELD,
          new Date(now()).toISOString(),
        )) as number;
        if (set === -1) return { outcome: 'not_found' };
        if (set !== 1) {
          const after = await snapshot(id);
          return after
            ? { outcome: 'already_finished', status: publicStatus(after) }
            : { outcome: 'not_found' };
        }
        await redis.publish(cancelChannel(settings), id);
        await hurry(id, before.bullState);
        return { outcome: 'cancelled' };
      });
    },

    /** PING within `timeoutMs` (readiness). */
    async ping(timeoutMs: number): Promise<boolean> {
      let timer: NodeJS.Timeout | undefined;
      try {
        const pong = await Promise.race([
          redis.ping(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
          }),
        ]);
        return pong === 'PONG';
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
  };

  /** Best effort: the job may have moved on meanwhile, which is fine (the mark is durable). */
  async function hurry(id: string, state: BullState): Promise<void> {
    try {
      const job = (await queue.getJob(id)) as ImageJob | undefined;
      if (!job) return;
      if (state === 'delayed') await job.promote();
      else if (state === 'waiting' || state === 'prioritized') {
        await job.changePriority({ priority: 0, lifo: true });
      }
    } catch {
      // not delayed/waiting any more: a worker has it or it finished; nothing to hurry
    }
  }
}

export type JobStore = ReturnType<typeof createJobStore>;
