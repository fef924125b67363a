/**
 * The Lua of fair sharing (DESIGN "Fair sharing between users"). Every key lives under the
 * queue's prefix (one hash slot). `F` below is `<prefix>:<queue>:fair:`; a job's hash is
 * `<prefix>:<queue>:<id>` (P below). Scores of BullMQ's `prioritized` zset are
 * `priority·2^32 + tag`; tags and 2^32 are passed to Redis as numbers, never concatenated
 * into strings (Lua's tostring keeps 14 digits).
 */

/** 2^32: one priority band of BullMQ's prioritized zset. */
export const BAND = 4294967296;

/**
 * Drops stale entries from the oldest end of a user's waiting zset (score: enqueue time;
 * negative while only reserved by RESERVE_LUA): a job BullMQ has started (`processedOn`),
 * one whose hash is gone (removed; a reservation only after a minute: its add may still
 * come). Stops at the first live job, so each entry is looked at about once; young
 * reservations are passed over. Returns the zset's size after.
 */
const TRIM_WAITING = `
local function trimWaiting(wkey, prefix, now, limit)
  local entries = redis.call("ZRANGE", wkey, 0, limit - 1, "WITHSCORES")
  for i = 1, #entries, 2 do
    local id, at = entries[i], tonumber(entries[i + 1])
    local jkey = prefix .. id
    local stale
    if redis.call("EXISTS", jkey) == 1 then
      stale = redis.call("HEXISTS", jkey, "processedOn") == 1
      if not stale and at > 0 then break end
    else
      stale = at > 0 or -at < now - 60000
    end
    if stale then redis.call("ZREM", wkey, id) end
  end
  return redis.call("ZCARD", wkey)
end`;

/**
 * Removes members of a user's active set whose job is finished or gone: BullMQ's own
 * state (`finishedOn`, written by moveToFinished; a removed job has no hash). Returns the
 * set's size after.
 */
const HEAL_ACTIVE = `
local function healActive(akey, prefix)
  for _, id in ipairs(redis.call("SMEMBERS", akey)) do
    local jkey = prefix .. id
    if redis.call("EXISTS", jkey) == 0 or redis.call("HEXISTS", jkey, "finishedOn") == 1 then
      redis.call("SREM", akey, id)
    end
  end
  return redis.call("SCARD", akey)
end`;

/** The user's limit: the override hash's field, else the default; <= 0: none. */
const LIMIT_OF = `
local function limitOf(hkey, user, default)
  local v = tonumber(redis.call("HGET", hkey, user) or default)
  if v == nil or v <= 0 then return nil end
  return v
end`;

/**
 * Run in the enqueue's MULTI after BullMQ's add (which put the job in `prioritized` with
 * BullMQ's own counter as its tag). Only for the job this request created (its request
 * token is on the hash). Gives the job its tag: the band's virtual time V (the tag of its
 * head, never moving back) plus the user's other waiting jobs, so a user's k-th waiting job
 * sits after every other user's (k-1)-th (equal tags: BullMQ's member order, i.e. job id).
 * KEYS: job hash, prioritized, F.."vt", F.."w:"..user, F.."users".
 * ARGV: token field, token, band (BullMQ priority >= 1), user, job id, now (ms), prefix P.
 * Returns the tag, or -1 for a job this request did not create.
 */
export const TAG_LUA = `${TRIM_WAITING}
if redis.call("HGET", KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
local id = ARGV[5]
local base = tonumber(ARGV[3]) * ${BAND}
local vfield = "v:" .. ARGV[3]
local v = tonumber(redis.call("HGET", KEYS[3], vfield) or "0")
-- the band's head other than this job (which BullMQ just added with its counter)
local head = redis.call("ZRANGEBYSCORE", KEYS[2], base, base + ${BAND - 1}, "WITHSCORES", "LIMIT", 0, 2)
local at = head[1] == id and 4 or 2
if head[at] then
  local t = tonumber(head[at]) - base
  if t > v then v = t; redis.call("HSET", KEYS[3], vfield, v) end
end
local now = tonumber(ARGV[6])
redis.call("ZADD", KEYS[4], now, id)
local n = trimWaiting(KEYS[4], ARGV[7], now, 4)
local tag = math.min(v + n - 1, ${BAND - 1})
redis.call("ZADD", KEYS[2], "XX", base + tag, id)
redis.call("HSET", KEYS[1], "fairTag", tag, "fairUser", ARGV[4])
redis.call("SADD", KEYS[5], ARGV[4])
return tag`;

/**
 * Before the add, when the user has a queued limit: the user's waiting plus parked jobs
 * against it (stale waiting entries are dropped first); under it, the job id is reserved
 * in the waiting zset (so concurrent requests count each other).
 * KEYS: F.."w:"..user, F.."p:"..user, F.."max-queued", F.."users".
 * ARGV: user, default limit, job id, now, prefix P.
 * Returns 1 reserved (or no limit), 0 full.
 */
export const RESERVE_LUA = `${TRIM_WAITING}${LIMIT_OF}
local limit = limitOf(KEYS[3], ARGV[1], ARGV[2])
if not limit then return 1 end
local now = tonumber(ARGV[4])
local n = trimWaiting(KEYS[1], ARGV[5], now, 20)
if n + redis.call("ZCARD", KEYS[2]) >= limit then
  -- a full look, once at the limit: started or removed jobs anywhere in the zset
  local entries = redis.call("ZRANGE", KEYS[1], 0, -1, "WITHSCORES")
  for i = 1, #entries, 2 do
    local jkey = ARGV[5] .. entries[i]
    local started = redis.call("HEXISTS", jkey, "processedOn") == 1
    if started or (tonumber(entries[i + 1]) > 0 and redis.call("EXISTS", jkey) == 0) then
      redis.call("ZREM", KEYS[1], entries[i])
    end
  end
  if redis.call("ZCARD", KEYS[1]) + redis.call("ZCARD", KEYS[2]) >= limit then return 0 end
end
redis.call("ZADD", KEYS[1], "NX", -now, ARGV[3])
redis.call("SADD", KEYS[4], ARGV[1])
return 1`;

/**
 * A worker's admission of a job it just took, when the user has an active limit. A job
 * that already holds a slot (a resume) or was cancelled runs; else it takes a slot if one
 * is free (finished or removed members are dropped first); else, while this worker still
 * holds its lock, it is parked: out of BullMQ's active list (its lock and stalled entry
 * gone, the attempt BullMQ counted given back) into the user's parked zset, scored as in
 * `prioritized`, so it keeps its place.
 * KEYS: job hash, active, stalled, lock, F.."a:"..user, F.."p:"..user, F.."max-active",
 * F.."users". ARGV: job id, user, default limit, token, prefix P.
 * Returns 1 run, 0 parked, -1 the lock is not this worker's (it must let the job go).
 */
export const ADMIT_LUA = `${HEAL_ACTIVE}${LIMIT_OF}
local id = ARGV[1]
local limit = limitOf(KEYS[7], ARGV[2], ARGV[3])
if not limit then return 1 end
if redis.call("SISMEMBER", KEYS[5], id) == 1 then return 1 end
if redis.call("HEXISTS", KEYS[1], "cancelRequested") == 1 then return 1 end
local n = redis.call("SCARD", KEYS[5])
if n >= limit then n = healActive(KEYS[5], ARGV[5]) end
if n < limit then
  redis.call("SADD", KEYS[5], id)
  redis.call("SADD", KEYS[8], ARGV[2])
  return 1
end
if redis.call("GET", KEYS[4]) ~= ARGV[4] then return -1 end
redis.call("LREM", KEYS[2], 1, id)
redis.call("DEL", KEYS[4])
redis.call("SREM", KEYS[3], id)
redis.call("HINCRBY", KEYS[1], "ats", -1)
local score = tonumber(redis.call("HGET", KEYS[1], "priority") or "0") * ${BAND}
  + tonumber(redis.call("HGET", KEYS[1], "fairTag") or "0")
redis.call("ZADD", KEYS[6], score, id)
redis.call("SADD", KEYS[8], ARGV[2])
return 0`;

/**
 * Frees a user's slots held by finished or removed jobs and moves as many parked jobs as
 * there are free slots back where BullMQ takes them, in their order (`prioritized` with
 * their old score; a job without a priority to the front of `wait`), waking workers with
 * BullMQ's marker. Run when a job of the user ends, and by the periodic sweep. A user with
 * nothing left leaves the users set.
 * KEYS: F.."a:"..user, F.."p:"..user, F.."w:"..user, F.."max-active", F.."users",
 * prioritized, wait, marker. ARGV: user, default limit, prefix P, now (ms).
 * Returns the number of jobs unparked.
 */
export const RELEASE_LUA = `${TRIM_WAITING}${HEAL_ACTIVE}${LIMIT_OF}
local limit = limitOf(KEYS[4], ARGV[1], ARGV[2])
local n = healActive(KEYS[1], ARGV[3])
local w = trimWaiting(KEYS[3], ARGV[3], tonumber(ARGV[4]), 20)
local free = limit and (limit - n) or redis.call("ZCARD", KEYS[2])
local moved = 0
while free > 0 do
  local top = redis.call("ZPOPMIN", KEYS[2])
  if not top[1] then break end
  if redis.call("EXISTS", ARGV[3] .. top[1]) == 1 then
    local score = tonumber(top[2])
    if score >= ${BAND} then redis.call("ZADD", KEYS[6], score, top[1])
    else redis.call("RPUSH", KEYS[7], top[1]) end
    moved = moved + 1
    free = free - 1
  end
end
if moved > 0 then redis.call("ZADD", KEYS[8], 0, "0") end
if n == 0 and w == 0 and redis.call("ZCARD", KEYS[2]) == 0 then
  redis.call("SREM", KEYS[5], ARGV[1])
end
return moved`;

/**
 * Per-user counts for metrics and the dashboard. Running: BullMQ's active list, each job's
 * user read from its hash. For each user given: waiting (never started, stale entries
 * dropped) and parked. KEYS: none (built from ARGV[1] = F and ARGV[2] = P, one slot).
 * ARGV: F, P, now, users... Returns { {user, running, ...}, {user, waiting, parked, ...} }.
 */
export const USAGE_LUA = `${TRIM_WAITING}
local running, counts = {}, {}
for _, id in ipairs(redis.call("LRANGE", ARGV[2] .. "active", 0, -1)) do
  local u = redis.call("HGET", ARGV[2] .. id, "${'fairUser'}")
  if u then counts[u] = (counts[u] or 0) + 1 end
end
for u, n in pairs(counts) do running[#running + 1] = u; running[#running + 1] = n end
local queued = {}
for i = 4, #ARGV do
  local u = ARGV[i]
  queued[#queued + 1] = u
  queued[#queued + 1] = trimWaiting(ARGV[1] .. "w:" .. u, ARGV[2], tonumber(ARGV[3]), 100)
  queued[#queued + 1] = redis.call("ZCARD", ARGV[1] .. "p:" .. u)
end
return { running, queued }`;

/**
 * A cancelled job that is parked goes to the front of `wait` at once (a worker then
 * fails it as cancelled without a slot). KEYS: job hash, wait, marker. ARGV: F, job id.
 * Returns 1 moved, 0 not parked.
 */
export const UNPARK_CANCELLED_LUA = `
local user = redis.call("HGET", KEYS[1], "fairUser")
if not user or redis.call("ZREM", ARGV[1] .. "p:" .. user, ARGV[2]) == 0 then return 0 end
redis.call("RPUSH", KEYS[2], ARGV[2])
redis.call("ZADD", KEYS[3], 0, "0")
return 1`;
