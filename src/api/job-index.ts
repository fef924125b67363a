import { createHash } from 'node:crypto';
import type IORedis from 'ioredis';
import { z } from 'zod';
import { CANCEL_FIELD, type JobData, type QueueSettings } from '../queue';
import { PUBLIC_STATUSES, publicStatus, type JobSnapshot } from './job-view';

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

/**
 * Lua: drops a member whose job is gone (no hash, or a hash of a later job with the same
 * id: a reused idempotent id) from every set it is in, as derived from the member.
 * `base` is the queue's key prefix (`<prefix>:<queue>:`).
 */
const DANGLING_LUA = `
local function parse(m)
  return string.match(m, "^(%d+):([^:]+):([^:]*):([^:]*)$")
end
local function gone(base, m)
  local ts, id, o, u = parse(m)
  if not id then return true, nil end
  local stored = redis.call("HGET", base .. id, "timestamp")
  return (not stored) or tonumber(stored) ~= tonumber(ts), id, o, u
end
local function drop(base, m, o, u)
  redis.call("ZREM", base .. "list:all", m)
  if u and u ~= "" then redis.call("ZREM", base .. "list:u:" .. u, m) end
  if o and o ~= "" then
    redis.call("ZREM", base .. "list:o:" .. o .. ":all", m)
    if u and u ~= "" then redis.call("ZREM", base .. "list:o:" .. o .. ":u:" .. u, m) end
  end
end
`;

/**
 * One page's candidates, newest first after ARGV[2] (a member, '' for the newest): up to
 * ARGV[3] live jobs that may be in public status ARGV[5] ('' any), looking at no more than
 * ARGV[4] members; dangling members met on the way are dropped. Returns { ids, last member
 * looked at or '', more (0/1), dropped }. KEYS: the index, completed, failed, active.
 * ARGV[6]: the cancel mark's field.
 *
 * `maybe` keeps a superset of the jobs `publicStatus` (job-view.ts) gives that status, from
 * BullMQ's sets and, for finished statuses of unfinished jobs (an outcome saved but not yet
 * moved, a cancel mark), a plain search of the job's data; the caller decides exactly.
 */
const PAGE_LUA = `${DANGLING_LUA}
local base, after, limit, scanMax, status, markField = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local function has(text, needle) return text and string.find(text, needle, 1, true) ~= nil end
local function maybe(id)
  if status == "" then return true end
  local key = base .. id
  if redis.call("ZSCORE", KEYS[2], id) then return status == "completed" end
  if redis.call("ZSCORE", KEYS[3], id) then
    if status == "failed" then return true end
    if status ~= "cancelled" then return false end
    local f = redis.call("HMGET", key, "data", "failedReason")
    return has(f[1], "cancelled") or has(f[2], "cancelled")
  end
  local active = redis.call("LPOS", KEYS[4], id)
  if status == "submitted" or status == "running" then return active ~= false end
  if status == "queued" then return true end
  if has(redis.call("HGET", key, "data"), '"status":"' .. status .. '"') then return true end
  return status == "cancelled" and redis.call("HEXISTS", key, markField) == 1
end
local max = after == "" and "+" or ("(" .. after)
local ids, last, scanned, dropped = {}, after, 0, 0
while #ids < limit and scanned < scanMax do
  local batch = redis.call("ZREVRANGEBYLEX", KEYS[1], max, "-", "LIMIT", 0, math.min(100, scanMax - scanned))
  if #batch == 0 then return { ids, "", 0, dropped } end
  for _, m in ipairs(batch) do
    scanned, last = scanned + 1, m
    local isGone, id, o, u = gone(base, m)
    if isGone then
      redis.call("ZREM", KEYS[1], m)
      drop(base, m, o, u)
      dropped = dropped + 1
    elseif maybe(id) then
      ids[#ids + 1] = id
    end
    if #ids >= limit or scanned >= scanMax then break end
  end
  max = "(" .. last
end
local more = #redis.call("ZREVRANGEBYLEX", KEYS[1], "(" .. last, "-", "LIMIT", 0, 1)
return { ids, last, more, dropped }`;

/**
 * The sweep: from the oldest member up, drops dangling ones, stopping at the first member
 * created at or after ARGV[2] (ms: no job that young has been removed by retention) or
 * after ARGV[3] members. Returns { dropped, last member looked at, or '' when done }.
 * KEYS: the all-jobs index. ARGV: base, cutoff ms, batch, after ('' from the oldest).
 */
const SWEEP_LUA = `${DANGLING_LUA}
local base, cutoff, batch, after = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local min = after == "" and "-" or ("(" .. after)
local dropped = 0
local members = redis.call("ZRANGEBYLEX", KEYS[1], min, "+", "LIMIT", 0, batch)
for _, m in ipairs(members) do
  local ts = tonumber(string.match(m, "^(%d+):") or "0")
  if ts >= cutoff then return { dropped, "" } end
  local isGone, _, o, u = gone(base, m)
  if isGone then drop(base, m, o, u); dropped = dropped + 1 end
end
if #members < batch then return { dropped, "" } end
return { dropped, members[#members] }`;

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

type Script = (...keysAndArgs: (string | number)[]) => Promise<unknown>;

export function createJobIndex(redis: IORedis, settings: Names, keys: Record<string, string>) {
  const client = redis as IORedis & { comfyqListPage?: Script; comfyqListSweep?: Script };
  client.defineCommand('comfyqListPage', { numberOfKeys: 4, lua: PAGE_LUA });
  client.defineCommand('comfyqListSweep', { numberOfKeys: 1, lua: SWEEP_LUA });

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
      const [ids, last, more] = (await client.comfyqListPage!(
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
        const [n, last] = (await client.comfyqListSweep!(
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
