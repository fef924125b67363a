--[[
  Per-user counts for metrics and the dashboard (src/fair/index.ts topUsers). Running:
  BullMQ's active list, each job's user read from its hash. For each user given: waiting
  (never started, stale entries dropped) and parked. No KEYS: they are built from F and P
  (one hash slot, the queue's prefix).

  ARGV: F (<prefix>:<queue>:fair:), P (<prefix>:<queue>:), users...
  Returns { {user, running, ...}, {user, waiting, parked, ...} }.
]]
--- @include "includes/trimWaiting"
local running, counts = {}, {}
for _, id in ipairs(redis.call("LRANGE", ARGV[2] .. "active", 0, -1)) do
  local u = redis.call("HGET", ARGV[2] .. id, "fairUser")
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
return { running, queued }
