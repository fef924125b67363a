--[[
  A cancelled job that is parked goes to the front of `wait` at once, and workers are woken
  with BullMQ's marker: a worker then fails it as cancelled without a slot
  (src/api/cancel.ts through src/fair/index.ts unparkCancelled).

  KEYS: job hash, wait, marker
  ARGV: F (<prefix>:<queue>:fair:), job id
  Returns 1 moved, 0 not parked.
]]
local user = redis.call("HGET", KEYS[1], "fairUser")
if not user or redis.call("ZREM", ARGV[1] .. "p:" .. user, ARGV[2]) == 0 then return 0 end
redis.call("RPUSH", KEYS[2], ARGV[2])
redis.call("ZADD", KEYS[3], 0, "0")
return 1
