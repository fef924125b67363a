--[[
  The fair part of the enqueue's script (enqueue.lua), run in its MULTI right after BullMQ's
  add (which put the job in `prioritized` with BullMQ's own counter as its tag), only for the
  job this request created. With `fair` it gives the job its tag: the band's virtual time V
  (the tag of its head, never moving back) plus the user's other waiting jobs of the band, so
  a user's k-th waiting job sits after every other user's (k-1)-th (equal tags: BullMQ's
  member order, i.e. job id); without, the job keeps BullMQ's score (USER_MAX_QUEUED alone).
  Either way the user's waiting zset gets the job with its score in `prioritized`, and loses
  what lies below V and the queue's head (taken: see includes/trimWaiting), in ranges,
  without a look at any job.
  Arguments: prioritized, F.."vt", F.."w:"..user, F.."users", band (BullMQ priority >= 1, a
  string), user, job id, fair (boolean). Returns the tag (0 without `fair`).
]]
--- @include "includes/band"
local function enqueueFair(pkey, vkey, wkey, ukey, band, user, id, fair)
  local base = tonumber(band) * BAND
  local top = base + BAND - 1
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
  local tag = math.min(v + n, BAND - 1)
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
  -- a user with waiting jobs is in the users set already (fairRelease drops only users
  -- with none)
  if n == 0 then redis.call("SADD", ukey, user) end
  return tag
end
