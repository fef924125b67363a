import { createHash, randomBytes } from 'node:crypto';
import { Job } from 'bullmq';
import type IORedis from 'ioredis';
import type { ChainableCommander } from 'ioredis';
import { v7 as uuidv7 } from 'uuid';
import {
  IMAGE_JOB_NAME,
  WORKFLOW_FIELD,
  jobKey,
  type ImageQueue,
  type QueueSettings,
} from '../queue';
import { TimeoutError, withTimeout } from '../lifecycle';
import { notApplied } from '../redis-errors';
import { redisScript } from '../scripts';
import {
  bullPriority,
  enqueueFairArgs,
  reserveQueued,
  tracksUsers,
  unreserveQueued,
  type FairSettings,
} from '../fair';
import { ApiError, OutcomeUnknownError, QueueUnavailableError, UserQueueFullError } from './errors';
import { indexEntry } from './job-index';
import type { JobFields } from './parse-job';
import { DEFAULT_JOB_TYPE } from './schemas';
import { newJobData, type JobInput, type JobRequest } from '../job/data';

/**
 * Adding a job so that an error answer always means "nothing changed": the job id is chosen
 * before anything is sent (UUID v7, or derived from the idempotency key), the job and its
 * own fields (workflow, body fingerprint, request token) are written in one MULTI, and
 * a failure is classified: not sent (the fail-fast connection refused it) → nothing
 * happened; sent but not confirmed (connection lost, or no answer within the budget) →
 * OutcomeUnknownError naming the id, so a retry with the same key is always safe.
 */

/** Hash fields of our own on BullMQ's job hash (BullMQ ignores them and deletes them with it). */
export const FINGERPRINT_FIELD = 'bodyHash';
export const TOKEN_FIELD = 'requestToken';

/** Runs after BullMQ's add in the same MULTI: src/scripts/enqueue.lua says what it does. */
const ENQUEUE = redisScript('enqueue');

type EnqueueScript = (...args: (string | number)[]) => Promise<unknown>;

/** Defines the enqueue's script on BullMQ's connection once (EVALSHA, loaded on first use). */
function enqueueCommand<C extends { defineCommand: IORedis['defineCommand'] }>(
  client: C,
): C & { comfyqEnqueue: EnqueueScript } {
  const c = client as C & { comfyqEnqueue?: EnqueueScript };
  if (!c.comfyqEnqueue) c.defineCommand('comfyqEnqueue', { lua: ENQUEUE.lua });
  return c as C & { comfyqEnqueue: EnqueueScript };
}

export interface NewJob {
  fields: JobFields;
  /** from the Idempotency-Key header or the body (the route checks they agree) */
  idempotencyKey?: string;
  /** the API key's name when keys are scoped */
  owner?: string;
  workflowJson: string;
  fingerprint: string;
  nodes: number;
  /** input files, checked and stored (inputs.ts) */
  inputs?: JobInput[];
  /** runs before a new job is added (not for a key's existing job); throws to refuse */
  admit?: () => Promise<void>;
}

export type EnqueueResult =
  | { outcome: 'created'; id: string }
  | { outcome: 'existing'; id: string }
  | { outcome: 'key_reused'; id: string };

/** The job id of an idempotency key, scoped by owner and user (no ':', never an integer). */
export function idempotentJobId(key: string, userId?: string, owner?: string): string {
  const scope = owner === undefined ? [userId ?? null, key] : [owner, userId ?? null, key];
  return `idem-${createHash('sha256').update(JSON.stringify(scope)).digest('hex')}`;
}

export interface EnqueueDeps {
  queue: ImageQueue;
  settings: Pick<QueueSettings, 'queuePrefix' | 'queueName'> &
    Partial<Pick<FairSettings, 'userFairness' | 'userMaxQueued'>>;
  budgetMs: number;
  now: () => number;
}

/** The request part of a new job's data. */
function requestOf(job: NewJob): JobRequest {
  const { fields } = job;
  const request: JobRequest = { jobType: fields.jobType ?? DEFAULT_JOB_TYPE };
  if (fields.userId !== undefined) request.userId = fields.userId;
  if (fields.webhookUrl !== undefined) request.webhookUrl = fields.webhookUrl;
  if (job.idempotencyKey !== undefined) request.idempotencyKey = job.idempotencyKey;
  if (fields.metadata !== undefined) request.metadata = fields.metadata;
  if (job.owner !== undefined) request.owner = job.owner;
  return request;
}

/** The stored fingerprint of an existing job, null for none; nothing is written. */
async function existing(
  queue: ImageQueue,
  settings: EnqueueDeps['settings'],
  id: string,
): Promise<string | null | undefined> {
  const client = await queue.backend.client;
  const [ts, fp] = await client.hmget(jobKey(settings, id), 'timestamp', FINGERPRINT_FIELD);
  return ts === null ? undefined : fp;
}

/**
 * The enqueue MULTI's replies: an error reply is thrown; else the stored [fingerprint,
 * 'mine' when this request's token owns the job], or null when no job was written.
 */
function storedBy(
  replies: [Error | null, unknown][] | null,
  token: string,
): [string, string] | null {
  const [addReply, own] = replies ?? [];
  if (addReply?.[0]) throw addReply[0];
  if (own?.[0]) throw own[0];
  const stored = own?.[1] as [string | null, string | null] | null;
  return stored && stored[0] !== null ? [stored[0], stored[1] === token ? 'mine' : ''] : null;
}

/**
 * USER_MAX_QUEUED (the user's override in the max-queued hash, else the default): a
 * place is reserved before the add, or nothing is written.
 */
async function reserve(
  client: Awaited<ImageQueue['backend']['client']>,
  fair: FairSettings,
  userId: string | undefined,
  id: string,
  at: number,
  budgetMs: number,
) {
  const reserved = reserveQueued(client as never, fair, userId, id, at);
  if (!(await readWithin(reserved, budgetMs, 'a user queue check'))) {
    throw new UserQueueFullError(userId);
  }
}

export function createEnqueue(deps: EnqueueDeps) {
  const { queue, settings, budgetMs, now } = deps;
  const fair: FairSettings = {
    ...settings,
    userFairness: settings.userFairness ?? false,
    userMaxQueued: settings.userMaxQueued ?? 0,
    userMaxActive: 0,
  };

  async function add(job: NewJob, id: string, at: number): Promise<[string, string] | null> {
    const { fields } = job;
    const data = { ...newJobData(null, requestOf(job), at, job.inputs), nodes: job.nodes };
    const priority = bullPriority(fair, fields.priority);
    const opts = {
      ...queue.defaultJobOptions,
      ...(priority ? { priority } : {}),
      timestamp: at,
      jobId: id,
    };
    const client = enqueueCommand(await queue.backend.client); // before the MULTI uses it
    if (client.status !== 'ready') throw new QueueUnavailableError('an enqueue (not connected)');
    const reserved = fair.userMaxQueued > 0;
    if (reserved) await reserve(client, fair, fields.userId, id, at, budgetMs);
    const multi = client.multi() as unknown as ChainableCommander &
      Pick<typeof client, 'comfyqEnqueue'>;
    await new Job(queue, IMAGE_JOB_NAME, data, opts, id).addJob(multi as never);
    const token = randomBytes(12).toString('base64url');
    const index = indexEntry(settings, at, id, job.owner, fields.userId);
    const users = tracksUsers(fair) ? enqueueFairArgs(fair, fields.userId, priority) : undefined;
    const mode = users ? (fair.userFairness ? 'fair' : 'queued') : '';
    void multi.comfyqEnqueue(
      1 + index.keys.length + (users?.keys.length ?? 0),
      jobKey(settings, id),
      ...index.keys,
      ...(users?.keys ?? []),
      job.workflowJson,
      job.fingerprint,
      token,
      index.member,
      index.keys.length,
      mode,
      ...(users?.args ?? ['', '']),
      id,
      reserved ? '1' : '0',
      WORKFLOW_FIELD,
      FINGERPRINT_FIELD,
      TOKEN_FIELD,
    );
    try {
      return storedBy(await withTimeout('an enqueue', budgetMs, multi.exec()), token);
    } catch (err) {
      if (notApplied(err)) {
        await unreserveQueued(client as never, fair, fields.userId, id).catch(() => undefined);
        throw new QueueUnavailableError('an enqueue', { cause: err });
      }
      throw new OutcomeUnknownError('an enqueue', id, { cause: err });
    }
  }

  /**
   * Adds the job, or finds the one its idempotency key made: the same body (fingerprint)
   * answers `existing`, another body `key_reused`. Without a key the id is a UUID v7.
   */
  return async function enqueue(job: NewJob): Promise<EnqueueResult> {
    const key = job.idempotencyKey;
    const id = key ? idempotentJobId(key, job.fields.userId, job.owner) : uuidv7();
    if (key) {
      const fp = await readWithin(
        existing(queue, settings, id),
        budgetMs,
        'an idempotency look-up',
      );
      // (a job stored before fingerprints existed cannot be compared: it is the same)
      if (fp !== undefined) {
        return { outcome: fp === null || fp === job.fingerprint ? 'existing' : 'key_reused', id };
      }
    }
    if (job.admit) await readWithin(job.admit(), budgetMs, 'the queue-depth check');
    const stored = await add(job, id, now());
    if (!stored) throw new OutcomeUnknownError('an enqueue', id);
    const [fp, mine] = stored;
    if (fp !== job.fingerprint) return { outcome: 'key_reused', id };
    return { outcome: mine ? 'created' : 'existing', id };
  };
}

/**
 * A check before the add (nothing written yet): its answer within `ms`, else, or on any
 * failure that is not already an answer (an ApiError, QueueUnavailableError), a
 * QueueUnavailableError.
 */
async function readWithin<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  try {
    return await withBudget(work, ms, what);
  } catch (err) {
    if (err instanceof ApiError || err instanceof QueueUnavailableError) throw err;
    throw new QueueUnavailableError(what, { cause: err });
  }
}

/** `work` within `ms`, else a QueueUnavailableError (only for reads: nothing was written). */
export async function withBudget<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  try {
    return await withTimeout(what, ms, work);
  } catch (err) {
    if (err instanceof TimeoutError) throw new QueueUnavailableError(`${what} within ${ms} ms`);
    throw err;
  }
}
