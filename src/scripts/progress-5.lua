--[[
  BullMQ's updateProgress (src/worker/persist.ts), checked against the job's lock; also
  answers whether a cancel was requested.

  KEYS: the job hash, its :logs list, its :lock, the queue's events stream, its meta hash
  ARGV: token, progress, job id, cancel field
  Returns 1 cancel requested, 0 not, -1 no such job, -2 the lock is not this token's.
]]
--- @include "includes/checkLock"
--- @include "includes/writeProgress"
local refused = checkLock(KEYS[1], KEYS[3], ARGV[1])
if refused then return refused end
writeProgress(KEYS[1], KEYS[4], KEYS[5], ARGV[2], ARGV[3])
if redis.call("HEXISTS", KEYS[1], ARGV[4]) == 1 then return 1 end
return 0
