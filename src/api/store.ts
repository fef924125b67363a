import type IORedis from 'ioredis';
import type { ImageJob, ImageQueue } from '../queue';
import { withTimeout } from '../lifecycle';
import { isConnectionError } from '../redis-errors';
import { createCancel } from './cancel';
import { createEnqueue, withBudget } from './enqueue';
import { QueueUnavailableError } from './errors';
import { createJobIndex, type ListRequest } from './job-index';
import { publicStatus, type JobSnapshot } from '../job/view';
import { JOB_ID_PATTERN } from './schemas';
import { createSnapshotReader } from '../job/snapshot';
import type { JobData } from '../job/data';
import type { PublicStatus } from '../job/status';

/**
 * Everything the API reads and writes in Redis, each operation bounded by a timeout so a
 * dead Redis becomes a 503 `queue_unavailable` within 2 s instead of a hanging request.
 */

export interface JobStoreSettings {
  queuePrefix: string;
  queueName: string;
  /** the whole operation's budget; the contract promises an answer within 2 s */
  redisTimeoutMs?: number;
  /** USER_FAIRNESS (round-robin order between users); off when not given */
  userFairness?: boolean;
  /** USER_MAX_QUEUED; 0 or not given: none */
  userMaxQueued?: number;
}

export interface JobStoreDeps {
  queue: ImageQueue;
  /** a fail-fast ('producer') connection for reads, the cancel mark and PING */
  redis: IORedis;
  settings: JobStoreSettings;
  now?: () => number;
  /** test seam: runs right before the cancel mark is sent */
  beforeCancelMark?: () => Promise<unknown>;
}

/** A scoped key (owner) sees only its own jobs; an admin key (no owner) sees all. */
export function ownedBy(s: JobSnapshot, owner: string | undefined): boolean {
  if (owner === undefined) return true;
  return (s.data as Partial<JobData> | null)?.request?.owner === owner;
}

export type RetryResult =
  | { outcome: 'retried'; snapshot: JobSnapshot }
  | { outcome: 'not_found' }
  | { outcome: 'already_finished' | 'not_finished'; status: PublicStatus };

export type { CancelOptions, CancelResult } from './cancel';

export function createJobStore(deps: JobStoreDeps) {
  const { queue, redis, settings } = deps;
  const now = deps.now ?? Date.now;
  const budgetMs = settings.redisTimeoutMs ?? 1_500;

  /** Runs a Redis operation within the budget; any failure means the queue is unavailable. */
  async function guard<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await withBudget(fn(), budgetMs, operation);
    } catch (err) {
      if (err instanceof QueueUnavailableError) throw err;
      // a bug or corrupted data stays a 500 (logged); a connection problem is a 503
      if (redis.status !== 'ready' || isConnectionError(err)) {
        throw new QueueUnavailableError(operation, { cause: err });
      }
      throw err;
    }
  }

  const snapshot = createSnapshotReader(redis, queue, settings);
  const cancel = createCancel({
    ...{ queue, redis, settings, budgetMs, now, snapshot, guard, ownedBy },
    beforeCancelMark: deps.beforeCancelMark,
  });
  const index = createJobIndex(redis, settings, queue.keys);

  return {
    /** The job's snapshot, or null for unknown (and malformed: never sent to Redis) ids. */
    read(id: string): Promise<JobSnapshot | null> {
      if (!JOB_ID_PATTERN.test(id)) return Promise.resolve(null);
      return guard('a job read', () => snapshot(id));
    },

    /** One page of the job list, newest first (job-index.ts); a scoped key sees its own. */
    list: (q: ListRequest) =>
      guard('a job list', () =>
        index.list(
          q,
          (id) => snapshot(id, false),
          (s) => ownedBy(s, q.owner),
        ),
      ),

    /** Drops the list entries of removed jobs created before `cutoffMs` (retention). */
    sweepIndex: (cutoffMs: number) => index.sweep(cutoffMs),

    /** the public status of a snapshot */
    statusOf: publicStatus,

    /** Adds the job (see enqueue.ts): created, existing (same key and body), key_reused. */
    enqueue: createEnqueue({ queue, settings, budgetMs, now }),

    /** Requests a cancel (cancel.ts): not_found, already_finished or cancelled. */
    cancel,

    /**
     * Runs a failed job again: BullMQ's retry moves it back to wait (deleting its
     * failedReason, the sign a worker reads to start a new generation: isRetryRequested).
     * Completed and cancelled jobs are not retried; a job that is still queued or running,
     * or whose failure BullMQ has not recorded yet, is not finished.
     */
    retry(id: string, opts: { owner?: string } = {}): Promise<RetryResult> {
      if (!JOB_ID_PATTERN.test(id)) return Promise.resolve({ outcome: 'not_found' });
      return guard('a retry', async () => {
        const before = await snapshot(id);
        if (!before || !ownedBy(before, opts.owner)) return { outcome: 'not_found' };
        const status = publicStatus(before);
        if (status === 'completed' || status === 'cancelled')
          return { outcome: 'already_finished', status };
        if (status !== 'failed' || before.bullState !== 'failed')
          return { outcome: 'not_finished', status };
        const job = (await queue.getJob(id)) as ImageJob | undefined;
        const moved = await job?.retry('failed').then(
          () => true,
          async (err: unknown) => {
            // another request retried it first (the job is no longer in `failed`)
            if ((await snapshot(id))?.bullState !== 'failed') return false;
            throw err;
          },
        );
        const after = await snapshot(id);
        if (!after) return { outcome: 'not_found' };
        if (!moved) return { outcome: 'not_finished', status: publicStatus(after) };
        return { outcome: 'retried', snapshot: after };
      });
    },

    /** PING within `timeoutMs` (readiness). */
    async ping(timeoutMs: number): Promise<boolean> {
      try {
        return (await withTimeout('PING', timeoutMs, redis.ping())) === 'PONG';
      } catch {
        return false;
      }
    },
  };
}

export type JobStore = ReturnType<typeof createJobStore>;
