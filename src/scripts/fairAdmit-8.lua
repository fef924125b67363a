--[[
  A worker's admission of a job it just took, when the user has an active limit
  (src/fair/index.ts createFairWorker). A job that already holds a slot (a resume) or was
  cancelled runs; else it takes a slot if one is free (finished or removed members are
  dropped first); else, while this worker still holds its lock, it is parked: out of
  BullMQ's active list (its lock and stalled entry gone, the attempt BullMQ's pickup counted
  in `ats` given back) into the user's parked zset, scored as in `prioritized`, so it keeps
  its place.

  KEYS: job hash, active, stalled, lock, F.."a:"..user, F.."p:"..user, F.."max-active",
        F.."users"
  ARGV: job id, user, default limit, token, prefix of job hashes
  Returns 1 run, 0 parked, -1 the lock is not this worker's (it must let the job go).
]]
-- follows BullMQ 6.7.0 commands/includes/prepareJobForProcessing.lua sha256 b1cc78fa3446e8ec3f52585f67a42fe40faf4d3f0328216bf8b6ed58106b4668
--- @include "includes/band"
--- @include "includes/healActive"
--- @include "includes/limitOf"
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
local score = tonumber(redis.call("HGET", KEYS[1], "priority") or "0") * BAND
  + tonumber(redis.call("HGET", KEYS[1], "fairTag") or "0")
redis.call("ZADD", KEYS[6], score, id)
redis.call("SADD", KEYS[8], ARGV[2])
return 0
