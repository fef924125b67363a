import type IORedis from 'ioredis';
import { Job } from 'bullmq';
import {
  IMAGE_JOB_NAME,
  CANCEL_FIELD,
  cancelChannel,
  jobKey,
  type ImageJob,
  type ImageQueue,
  type JobData,
} from '../queue';
import { fairKeys, unparkCancelled } from '../fair';
import { withTimeout } from '../lifecycle';
import { createEnqueue, notApplied, withBudget } from './enqueue';
import { OutcomeUnknownError, QueueUnavailableError } from './errors';
import { createJobIndex, type ListRequest } from './job-index';
import {
  QUEUE_POSITION_LIMIT,
  publicStatus,
  snapshotFromHash,
  type BullState,
  type JobSnapshot,
  type PublicStatus,
} from './job-view';
import { JOB_ID_PATTERN } from './schemas';

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

export interface CancelOptions {
  /** the DELETE's Idempotency-Key: the same key again answers like the first */
  idempotencyKey?: string;
  /** a scoped API key's name: other owners' jobs are not found */
  owner?: string;
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
export type CancelResult =
  | { outcome: 'cancelled' }
  | { outcome: 'not_found' }
  | { outcome: 'already_finished'; status: PublicStatus };

/**
 * Sets the durable cancel mark only on a job that exists and has not finished, atomically
 * (no stray hash for a job that retention just removed, one winner among concurrent cancels),
 * and publishes the cancel to workers in the same step, so an API that dies right after the
 * mark cannot leave a running job unaware of it. The cancel's idempotency key is kept beside
 * the mark, so the same DELETE again is recognised as a repeat.
 * ARGV: field, value, channel, job id, key field, idempotency key ('' for none).
 * Returns 1 set, 2 already set by this key, 0 already marked, -1 no such job, -2 finished.
 */
const CANCEL_MARK_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], ARGV[5]) == ARGV[6] then return 2 end
if redis.call('HEXISTS', KEYS[1], 'finishedOn') == 1 then return -2 end
local set = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if set == 1 then
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], ARGV[5], ARGV[6]) end
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return set`;

/** Field beside the cancel mark: the Idempotency-Key of the DELETE that set it. */
const CANCEL_KEY_FIELD = 'cancelKey';

/** The hash fields a job's view is made of: never the workflow (DESIGN "The API boundary"). */
const SNAPSHOT_FIELDS = [
  'data',
  'progress',
  'returnvalue',
  'failedReason',
  'timestamp',
  'processedOn',
  'finishedOn',
  'ats',
  CANCEL_FIELD,
];

/**
 * A job's snapshot in one round trip (`snapshot()`): the fields of its hash that the view
 * needs, its BullMQ state and, for a waiting or prioritized job, the jobs ahead of it.
 * Returns nil for a job with no hash, else { state, jobs ahead (-1: none), field/value list }.
 *
 * The state is BullMQ's `getStateV2-8.lua`, check for check and in its order, except how
 * `wait` is searched: from its tail, where workers take jobs (`RPOPLPUSH wait active` in
 * fetchNextJob), and over at most ARGV[2] entries, so the read of a job about to run costs
 * little and none scans a whole backlog. A job not among the last ARGV[2] of a longer
 * `wait` and in no other set is deeper in `wait` (every BullMQ script moves a job between
 * its sets atomically, so a job hash in none of them does not occur); it has at least
 * ARGV[2] jobs ahead. Plain jobs run before prioritized ones, which run in ZRANK order.
 *
 * KEYS: job hash, completed, failed, delayed, prioritized, active, wait, paused,
 * waiting-children, the prefix of the users' parked zsets (all under the queue's hash tag). ARGV: job id, scan bound (>= 1), then
 * the hash fields to read (HMGET: the workflow, however large, is never read).
 */
const SNAPSHOT_LUA = `
local rcall = redis.call
if rcall("EXISTS", KEYS[1]) == 0 then return nil end
local values = rcall("HMGET", KEYS[1], unpack(ARGV, 3))
local hash = {}
for i = 3, #ARGV do
  local v = values[i - 2]
  if v then hash[#hash + 1] = ARGV[i]; hash[#hash + 1] = v end
end
local id, bound = ARGV[1], tonumber(ARGV[2])
local state, ahead = "unknown", -1
if rcall("ZSCORE", KEYS[2], id) then state = "completed"
elseif rcall("ZSCORE", KEYS[3], id) then state = "failed"
elseif rcall("ZSCORE", KEYS[4], id) then state = "delayed"
elseif rcall("ZSCORE", KEYS[5], id) then
  state = "prioritized"
  ahead = rcall("LLEN", KEYS[7]) + rcall("ZRANK", KEYS[5], id)
elseif rcall("LPOS", KEYS[6], id) then state = "active"
else
  local len = rcall("LLEN", KEYS[7])
  -- the index counts from the head even when the search starts at the tail
  local index = rcall("LPOS", KEYS[7], id, "RANK", -1, "MAXLEN", bound)
  if index then state, ahead = "waiting", len - 1 - index
  elseif rcall("LPOS", KEYS[8], id) then state = "waiting"
  elseif rcall("ZSCORE", KEYS[9], id) then state = "waiting-children"
  else
    -- parked by USER_MAX_ACTIVE (src/fair): its user's parked jobs before it, then the
    -- queue's jobs that run before its score when it is unparked
    local user = rcall("HGET", KEYS[1], "fairUser")
    local score = user and rcall("ZSCORE", KEYS[10] .. user, id)
    if score then
      state = "prioritized"
      ahead = rcall("ZRANK", KEYS[10] .. user, id) + rcall("LLEN", KEYS[7])
        + rcall("ZCOUNT", KEYS[5], "-inf", "(" .. score)
    elseif len > bound then state, ahead = "waiting", bound
    end
  end
end
return { state, ahead, hash }`;

type SnapshotScript = (...keysAndArgs: string[]) => Promise<[string, number, string[]] | null>;

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

  const client = redis as IORedis & { comfyqSnapshot?: SnapshotScript };
  client.defineCommand('comfyqSnapshot', { numberOfKeys: 10, lua: SNAPSHOT_LUA });
  const k = queue.keys;
  const stateKeys = [
    k.completed,
    k.failed,
    k.delayed,
    k.prioritized,
    k.active,
    k.wait,
    k.paused,
    k['waiting-children'],
    fairKeys(settings).parked(''),
  ];

  /**
   * The job's hash, state, cancel mark and position in one round trip (SNAPSHOT_LUA);
   * without the position (the list: a search of `wait` per listed job would cost a backlog).
   */
  async function snapshot(id: string, withPosition = true): Promise<JobSnapshot | null> {
    const reply = await client.comfyqSnapshot!(
      jobKey(settings, id),
      ...stateKeys,
      id,
      // without the position, a waiting job is found in O(1) (not among the last 1: deeper)
      String(withPosition ? QUEUE_POSITION_LIMIT : 1),
      ...SNAPSHOT_FIELDS,
    );
    if (!reply) return null;
    const [state, ahead, flat] = reply;
    const raw: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) raw[flat[i]] = flat[i + 1];
    // parsed before the state is looked at: a corrupted hash is a 500 as with getJob
    const s = snapshotFromHash(id, state as BullState, raw, CANCEL_FIELD);
    if (state === 'unknown') return null;
    if (withPosition && s.cancelRequestedAt === undefined && ahead >= 0) {
      s.queuePosition = Math.min(ahead, QUEUE_POSITION_LIMIT);
    }
    return s;
  }

  const index = createJobIndex(redis, settings, k);

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

    /**
     * Requests a cancel: the durable mark on the job hash with the message to the worker that
     * holds it (one script). A job waiting in the queue is then moved to the front (or
     * promoted, if delayed) so a worker fails it as `cancelled` at pickup, which also removes
     * a prompt it may still have in ComfyUI. An error means nothing changed, or (outcome
     * unknown) that the mark may be set: the same DELETE with the same key is then safe.
     */
    async cancel(id: string, opts: CancelOptions = {}): Promise<CancelResult> {
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
    },

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

  /** The cancel mark script; a failure after sending it is an unknown outcome. */
  async function mark(id: string, key: string): Promise<number> {
    if (redis.status !== 'ready') throw new QueueUnavailableError('a cancel (not connected)');
    const sent = redis.eval(
      CANCEL_MARK_LUA,
      1,
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

export type JobStore = ReturnType<typeof createJobStore>;
