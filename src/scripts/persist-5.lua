--[[
  A worker's write of its job (src/worker/persist.ts), checked against the job's lock: the
  job's data (JobState), optionally its progress (field and event), a Bull Board log line, its
  return value and its failed reason; answers whether a cancel was requested (so the pickup
  check costs nothing). The return value is written with the outcome, so a worker that dies
  before BullMQ's moveToFinished finds the outputs in the job (BullMQ writes the same value
  again); the workflow field goes with it (a failed job keeps its workflow until retention).

  KEYS: the job hash, its :logs list, its :lock, the queue's events stream, its meta hash
  ARGV: token, data, progress, log line, cancel field, return value, job id, failed reason,
        workflow field ('' for each optional part left out)
  Returns 1 cancel requested, 0 not, -1 no such job, -2 the lock is not this token's.
]]
--- @include "includes/checkLock"
--- @include "includes/writeProgress"
local refused = checkLock(KEYS[1], KEYS[3], ARGV[1])
if refused then return refused end
redis.call("HSET", KEYS[1], "data", ARGV[2])
if ARGV[3] ~= "" then writeProgress(KEYS[1], KEYS[4], KEYS[5], ARGV[3], ARGV[7]) end
if ARGV[4] ~= "" then redis.call("RPUSH", KEYS[2], ARGV[4]) end
if ARGV[6] ~= "" then
  redis.call("HSET", KEYS[1], "returnvalue", ARGV[6])
  redis.call("HDEL", KEYS[1], ARGV[9])
end
if ARGV[8] ~= "" then redis.call("HSET", KEYS[1], "failedReason", ARGV[8]) end
if redis.call("HEXISTS", KEYS[1], ARGV[5]) == 1 then return 1 end
return 0
