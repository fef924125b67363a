--[[
  Before the enqueue's add, when the user has a queued limit (src/fair/index.ts
  reserveQueued): the user's waiting plus parked jobs plus reservations against it (stale
  waiting entries are dropped first); under it, the job id is reserved in the user's
  reservations zset (score: now), so concurrent requests count each other. The enqueue's
  script drops the reservation; one whose add never came is dropped after a minute.
  Every key lives under the queue's prefix (one hash slot); F is <prefix>:<queue>:fair:.

  KEYS: F.."w:"..user, F.."p:"..user, F.."max-queued", F.."users", F.."r:"..user, prioritized
  ARGV: user, default limit, job id, now (ms)
  Returns 1 reserved (or no limit), 0 full.
]]
--- @include "includes/trimWaiting"
--- @include "includes/limitOf"
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
return 1
