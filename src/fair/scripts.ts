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
 * A user's waiting zset holds each of the user's jobs in `prioritized` with the same score
 * (set by ENQUEUE_FAIR). BullMQ takes jobs from `prioritized` lowest score first, so an entry
 * scored below the queue's head has been taken (started, parked) or left otherwise
 * (cancelled, removed): it is dropped with one range removal, and an entry at the head's
 * own score is checked in `prioritized` (the round being served). Nothing in
 * `prioritized`: nothing waits. Returns the zset's size after.
 */
const TRIM_WAITING = `
local function trimWaiting(wkey, pkey)
  local head = redis.call("ZRANGE", pkey, 0, 0, "WITHSCORES")
  if not head[2] then
    redis.call("DEL", wkey)
    return 0
  end
  local h = tonumber(head[2])
  redis.call("ZREMRANGEBYSCORE", wkey, "-inf", h - 1)
  for _, id in ipairs(redis.call("ZRANGEBYSCORE", wkey, h, h)) do
    if not redis.call("ZSCORE", pkey, id) then redis.call("ZREM", wkey, id) end
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
 * A Lua function for the enqueue's own script (src/api/enqueue.ts), run in its MULTI right
 * after BullMQ's add (which put the job in `prioritized` with BullMQ's own counter as its
 * tag), only for the job this request created. With `fair` it gives the job its tag: the
 * band's virtual time V (the tag of its head, never moving back) plus the user's other
 * waiting jobs of the band, so a user's k-th waiting job sits after every other user's
 * (k-1)-th (equal tags: BullMQ's member order, i.e. job id); without, the job keeps
 * BullMQ's score (USER_MAX_QUEUED alone). Either way the user's waiting zset gets the job
 * with its score in `prioritized`, and loses what lies below V and the queue's head
 * (taken: see TRIM_WAITING), in ranges, without a look at any job.
 * Arguments: prioritized, F.."vt", F.."w:"..user, F.."users", band (BullMQ priority >= 1,
 * a string), user, job id, fair (boolean). Returns the tag (0 without `fair`).
 */
export const ENQUEUE_FAIR = `
local function enqueueFair(pkey, vkey, wkey, ukey, band, user, id, fair)
  local base = tonumber(band) * ${BAND}
  local top = base + ${BAND - 1}
  local vfield = "v:" .. band
  local v = tonumber(redis.call("HGET", vkey, vfield) or "0")
  -- the queue's head other than this job; when a higher band is not empty, this band's
  local head = redis.call("ZRANGE", pkey, 0, 0, "WITHSCORES")
  if head[1] == id then head = redis.call("ZRANGE", pkey, 1, 1, "WITHSCORES") end
  local first = tonumber(head[2])
  local bandHead = first
  if first and first < base then
    redis.call("ZREMRANGEBYSCORE", wkey, "-inf", first - 1)
    head = redis.call("ZRANGEBYSCORE", pkey, base, top, "WITHSCORES", "LIMIT", 0, 2)
    bandHead = tonumber(head[head[1] == id and 4 or 2])
  end
  if bandHead and bandHead <= top and bandHead - base > v then
    v = bandHead - base
    redis.call("HSET", vkey, vfield, v)
  end
  -- the user's waiting jobs of the band: from V on (below it they have been taken)
  local n = redis.call("ZCOUNT", wkey, base + v, top)
  local tag = math.min(v + n, ${BAND - 1})
  -- what was taken is dropped when the user has nothing waiting, else at every 16th tag
  -- (a user's tags grow while they wait: a bounded rest stays, counted nowhere)
  if n == 0 or tag % 16 == 0 then
    redis.call("ZREMRANGEBYSCORE", wkey, (first and first < base) and base or "-inf", base + v - 1)
  end
  local score
  if fair then
    score = base + tag
    redis.call("ZADD", pkey, "XX", score, id)
  else
    tag = 0
    score = tonumber(redis.call("ZSCORE", pkey, id))
  end
  if score then redis.call("ZADD", wkey, score, id) end
  -- a user with waiting jobs is in the users set already (RELEASE_LUA drops only users
  -- with none)
  if n == 0 then redis.call("SADD", ukey, user) end
  return tag
end`;

/**
 * Before the add, when the user has a queued limit: the user's waiting plus parked jobs
 * plus reservations against it (stale waiting entries are dropped first); under it, the
 * job id is reserved in the user's reservations zset (score: now), so concurrent requests
 * count each other. The enqueue's script drops the reservation; one whose add never came
 * is dropped after a minute.
 * KEYS: F.."w:"..user, F.."p:"..user, F.."max-queued", F.."users", F.."r:"..user,
 * prioritized. ARGV: user, default limit, job id, now.
 * Returns 1 reserved (or no limit), 0 full.
 */
export const RESERVE_LUA = `${TRIM_WAITING}${LIMIT_OF}
local limit = limitOf(KEYS[3], ARGV[1], ARGV[2])
if not limit then return 1 end
local now = tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[5], "-inf", now - 60000)
local function queued()
  return redis.call("ZCARD", KEYS[1]) + redis.call("ZCARD", KEYS[2]) + redis.call("ZCARD", KEYS[5])
end
trimWaiting(KEYS[1], KEYS[6])
if queued() >= limit then
  -- a full look, once at the limit: entries whose job is no longer in prioritized
  for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do
    if not redis.call("ZSCORE", KEYS[6], id) then redis.call("ZREM", KEYS[1], id) end
  end
  if queued() >= limit then return 0 end
end
redis.call("ZADD", KEYS[5], now, ARGV[3])
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
 * prioritized, wait, marker. ARGV: user, default limit, prefix P.
 * Returns the number of jobs unparked.
 */
export const RELEASE_LUA = `${TRIM_WAITING}${HEAL_ACTIVE}${LIMIT_OF}
local limit = limitOf(KEYS[4], ARGV[1], ARGV[2])
local n = healActive(KEYS[1], ARGV[3])
local w = trimWaiting(KEYS[3], KEYS[6])
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
 * ARGV: F, P, users... Returns { {user, running, ...}, {user, waiting, parked, ...} }.
 */
export const USAGE_LUA = `${TRIM_WAITING}
local running, counts = {}, {}
for _, id in ipairs(redis.call("LRANGE", ARGV[2] .. "active", 0, -1)) do
  local u = redis.call("HGET", ARGV[2] .. id, "${'fairUser'}")
  if u then counts[u] = (counts[u] or 0) + 1 end
end
for u, n in pairs(counts) do running[#running + 1] = u; running[#running + 1] = n end
local queued = {}
for i = 3, #ARGV do
  local u = ARGV[i]
  queued[#queued + 1] = u
  queued[#queued + 1] = trimWaiting(ARGV[1] .. "w:" .. u, ARGV[2] .. "prioritized")
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
