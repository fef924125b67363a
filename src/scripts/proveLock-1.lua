--[[
  A fresh proof that the worker still holds the job's BullMQ lock (src/worker/fence.ts): the
  lock is renewed like BullMQ's extendLock does (a plain key holding the worker's token).

  KEYS[1] the job's lock
  ARGV: token, lock duration (ms)
  Returns the lock's PTTL, or -2 when the lock is not this token's.
]]
-- follows BullMQ 6.7.0 commands/extendLock-2.lua sha256 266659b31ea3579908bfd52b369441d5f5f4c00ad81fd8995ceba08551235243
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return -2 end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return redis.call("PTTL", KEYS[1])
