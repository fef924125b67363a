import { createHash } from 'node:crypto';
import type IORedis from 'ioredis';
import { z } from 'zod';
import { CANCEL_FIELD, type QueueSettings } from '../queue';
import { redisScript, defineScripts } from '../scripts';
import { publicStatus, type JobSnapshot } from '../job/view';
import type { JobData } from '../job/data';
import { PUBLIC_STATUSES } from '../job/status';

/**
 * The job list's index (DESIGN "Operators and clients"): sorted sets whose members all have
 * score 0 and sort by their text, `<created ms, 15 digits>:<job id>:<owner tag>:<user tag>`,
 * so ZREVRANGEBYLEX walks them newest first and a cursor is a member: a position in a total
 * order that jobs added or removed elsewhere cannot shift. One set per scope a caller can
 * list: all jobs, a user's, an API key's (owner) and an owner's user's. A job's members are
 * written by the script that creates it (enqueue.ts, same MULTI) and dropped when a read or
 * the sweep finds its hash gone (BullMQ removes jobs in its own scripts: age removal at
 * another job's end, `clean`), so a removed job is never listed and no member outlives its
 * job for longer than one sweep after the retention clean.
 */

/** Scope tags: short, fixed-length and without ':' whatever the user id or key name. */
const tag = (s: string | undefined) =>
  s === undefined ? '' : createHash('sha256').update(s).digest('base64url').slice(0, 16);

type Names = Pick<QueueSettings, 'queuePrefix' | 'queueName'>;
const base = (s: Names) => `${s.queuePrefix}:${s.queueName}:`;

/** The set listing one scope: an owner (scoped API key) and/or a user, or everything. */
export function indexKey(s: Names, owner?: string, userId?: string): string {
  const o = owner === undefined ? '' : `o:${tag(owner)}:`;
  const u = userId === undefined ? 'all' : `u:${tag(userId)}`;
  return `${base(s)}list:${o}${u}`;
}

/** The sets a new job joins, and its member in each (the same in all). */
export function indexEntry(s: Names, at: number, id: string, owner?: string, userId?: string) {
  const keys = [indexKey(s)];
  if (userId !== undefined) keys.push(indexKey(s, undefined, userId));
  if (owner !== undefined) keys.push(indexKey(s, owner));
  if (owner !== undefined && userId !== undefined) keys.push(indexKey(s, owner, userId));
  const member = `${String(at).padStart(15, '0')}:${id}:${tag(owner)}:${tag(userId)}`;
  return { keys, member };
}

/** One page's candidates, and the sweep of removed jobs' members (their files say how). */
const LIST_PAGE = redisScript('listPage-4');
const LIST_SWEEP = redisScript('listSweep-1');

export const LIST_LIMIT = { default: 20, max: 100 } as const;
/** Members one page may look at: the bound on a page's cost, whatever the filter. */
export const LIST_SCAN_MAX = 500;

const MEMBER = /^\d{15}:[^:]+:[^:]*:[^:]*$/;
const encodeCursor = (member: string) => Buffer.from(member).toString('base64url');
const decodeCursor = (cursor: string) => Buffer.from(cursor, 'base64url').toString();

export const ListQuerySchema = z.strictObject({
  userId: z.string().min(1).max(256).optional().describe("only this user's jobs"),
  status: z.enum(PUBLIC_STATUSES).optional().describe('only jobs in this status now'),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(LIST_LIMIT.max)
    .default(LIST_LIMIT.default)
    .describe(`jobs per page, at most ${LIST_LIMIT.max}`),
  cursor: z
    .string()
    .max(2000)
    .refine((c) => MEMBER.test(decodeCursor(c)), 'cursor is not one this API gave')
    .optional()
    .describe("the previous page's nextCursor"),
});
export type ListQuery = z.infer<typeof ListQuerySchema>;

/** A list request: the query, and the caller's key name when keys are scoped. */
export type ListRequest = ListQuery & { owner?: string };

export interface ListPage {
  jobs: JobSnapshot[];
  /** the cursor of the next page, null at the end */
  next: string | null;
}

const userIdOf = (s: JobSnapshot) => (s.data as Partial<JobData> | null)?.request?.userId;

export function createJobIndex(redis: IORedis, settings: Names, keys: Record<string, string>) {
  const scripts = defineScripts(redis, { page: LIST_PAGE, sweep: LIST_SWEEP });

  return {
    /**
     * One page: the candidates of the index's script, read (`snapshot`, without queue
     * position), kept when their public status, user and owner (`visible`) match exactly.
     * Fewer than `limit` jobs when the scan bound was met; `next` continues after the last
     * member looked at.
     */
    async list(
      q: ListRequest,
      snapshot: (id: string) => Promise<JobSnapshot | null>,
      visible: (s: JobSnapshot) => boolean,
    ): Promise<ListPage> {
      const after = q.cursor === undefined ? '' : decodeCursor(q.cursor);
      const [ids, last, more] = (await scripts.page(
        indexKey(settings, q.owner, q.userId),
        keys.completed,
        keys.failed,
        keys.active,
        base(settings),
        after,
        q.limit,
        LIST_SCAN_MAX,
        q.status ?? '',
        CANCEL_FIELD,
      )) as [string[], string, number, number];
      const read = await Promise.all(ids.map(snapshot));
      const jobs = read.filter(
        (s): s is JobSnapshot =>
          s !== null &&
          visible(s) &&
          (q.userId === undefined || userIdOf(s) === q.userId) &&
          (q.status === undefined || publicStatus(s) === q.status),
      );
      return { jobs, next: more && last ? encodeCursor(last) : null };
    },

    /**
     * Drops the members of jobs retention removed: those created before `cutoffMs`, from the
     * oldest, in batches. Resolves to how many were dropped.
     */
    async sweep(cutoffMs: number, batch = 500): Promise<number> {
      let dropped = 0;
      let after = '';
      do {
        const [n, last] = (await scripts.sweep(
          indexKey(settings),
          base(settings),
          cutoffMs,
          batch,
          after,
        )) as [number, string];
        dropped += n;
        after = last;
      } while (after !== '');
      return dropped;
    },
  };
}

export type JobIndex = ReturnType<typeof createJobIndex>;
