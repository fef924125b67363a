import type IORedis from 'ioredis';
import { Job } from 'bullmq';
import { IMAGE_JOB_NAME, CANCEL_FIELD, cancelChannel, jobKey, type ImageQueue } from '../queue';
import { unparkCancelled } from '../fair';
import { notApplied } from '../redis-errors';
import { redisScript } from '../scripts';
import { withBudget } from './enqueue';
import { OutcomeUnknownError, QueueUnavailableError } from './errors';
import { publicStatus, type BullState, type JobSnapshot } from '../job/view';
import { JOB_ID_PATTERN } from './schemas';
import type { ReadSnapshot } from '../job/snapshot';
import type { PublicStatus } from '../job/status';

/**
 * A cancel from the API: the durable mark and the message to workers in one script, then a
 * waiting job hurried to a worker, which fails it as `cancelled` at pickup (the worker's
 * side is src/worker/run/abort.ts).
 */

export interface CancelOptions {
  /** the DELETE's Idempotency-Key: the same key again answers like the first */
  idempotencyKey?: string;
  /** a scoped API key's name: other owners' jobs are not found */
  owner?: string;
}

export type CancelResult =
  | { outcome: 'cancelled' }
  | { outcome: 'not_found' }
  | { outcome: 'already_finished'; status: PublicStatus };

/** The mark and the message to workers in one script (its file says how). */
const CANCEL_MARK = redisScript('cancelMark-1');

/** Field beside the cancel mark: the Idempotency-Key of the DELETE that set it. */
const CANCEL_KEY_FIELD = 'cancelKey';

export interface CancelDeps {
  queue: ImageQueue;
  redis: IORedis;
  settings: { queuePrefix: string; queueName: string };
  budgetMs: number;
  now: () => number;
  snapshot: ReadSnapshot;
  /** the store's guard: the operation within the budget, connection failures as 503 */
  guard: <T>(operation: string, fn: () => Promise<T>) => Promise<T>;
  ownedBy: (s: JobSnapshot, owner: string | undefined) => boolean;
  /** test seam: runs right before the cancel mark is sent */
  beforeCancelMark?: () => Promise<unknown>;
}

export function createCancel(deps: CancelDeps) {
  const { queue, redis, settings, budgetMs, now, snapshot, guard, ownedBy } = deps;

  /**
   * Requests a cancel: the durable mark on the job hash with the message to the worker that
   * holds it (one script). A job waiting in the queue is then moved to the front (or
   * promoted, if delayed) so a worker fails it as `cancelled` at pickup, which also removes
   * a prompt it may still have in ComfyUI. An error means nothing changed, or (outcome
   * unknown) that the mark may be set: the same DELETE with the same key is then safe.
   */
  return async function cancel(id: string, opts: CancelOptions = {}): Promise<CancelResult> {
    if (!JOB_ID_PATTERN.test(id)) return { outcome: 'not_found' };
    const before = await guard('a cancel', () => snapshot(id));
    if (!before || !ownedBy(before, opts.owner)) return { outcome: 'not_found' };
    const status = publicStatus(before);
    if (status === 'completed' || status === 'failed') {
      return { outcome: 'already_finished', status };
    }
    await deps.beforeCancelMark?.();
    const set = await mark(id, opts.idempotencyKey ?? '');
    if (set === -1) return { outcome: 'not_found' };
    if (set !== 1 && set !== 2) return { outcome: 'already_finished', status: 'cancelled' };
    // best effort, bounded: the cancel happened whatever this does
    await withBudget(hurry(id, before.bullState), budgetMs, 'hurry').catch(() => {});
    return { outcome: 'cancelled' };
  };

  /** The cancel mark script; a failure after sending it is an unknown outcome. */
  async function mark(id: string, key: string): Promise<number> {
    if (redis.status !== 'ready') throw new QueueUnavailableError('a cancel (not connected)');
    const sent = redis.eval(
      CANCEL_MARK.lua,
      CANCEL_MARK.numberOfKeys!,
      jobKey(settings, id),
      CANCEL_FIELD,
      new Date(now()).toISOString(),
      cancelChannel(settings),
      id,
      CANCEL_KEY_FIELD,
      key,
    ) as Promise<number>;
    try {
      return await withBudget(sent, budgetMs, 'a cancel');
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause ?? err;
      if (notApplied(err)) {
        throw new QueueUnavailableError('a cancel', { cause });
      }
      throw new OutcomeUnknownError('a cancel', id, { cause });
    }
  }

  /** Best effort: the job may have moved on meanwhile, which is fine (the mark is durable). */
  async function hurry(id: string, state: BullState): Promise<void> {
    try {
      // a handle on the job by id, not queue.getJob: that is an HGETALL, workflow included
      const job = new Job(queue, IMAGE_JOB_NAME, {}, {}, id);
      if (state === 'delayed') await job.promote();
      else if (state === 'waiting' || state === 'prioritized') {
        // a job parked by USER_MAX_ACTIVE is in no BullMQ list: it is moved by src/fair
        if (!(await unparkCancelled(redis, settings, id))) {
          await job.changePriority({ priority: 0, lifo: true });
        }
      }
    } catch {
      // not delayed/waiting any more: a worker has it or it finished; nothing to hurry
    }
  }
}
