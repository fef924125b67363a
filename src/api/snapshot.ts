import type IORedis from 'ioredis';
import { CANCEL_FIELD, jobKey, type ImageQueue } from '../queue';
import { fairKeys } from '../fair';
import {
  QUEUE_POSITION_LIMIT,
  snapshotFromHash,
  type BullState,
  type JobSnapshot,
} from './job-view';

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

/** A job's snapshot reader: one script round trip per read (SNAPSHOT_LUA). */
export function createSnapshotReader(
  redis: IORedis,
  queue: ImageQueue,
  settings: { queuePrefix: string; queueName: string },
) {
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
  return snapshot;
}

export type ReadSnapshot = ReturnType<typeof createSnapshotReader>;
