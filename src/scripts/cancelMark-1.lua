--[[
  The API's cancel mark (src/api/cancel.ts). Sets the durable cancel mark only on a job that
  exists and has not finished, atomically (no stray hash for a job that retention just
  removed, one winner among concurrent cancels), and publishes the cancel to workers in the
  same step, so an API that dies right after the mark cannot leave a running job unaware of
  it. The cancel's idempotency key is kept beside the mark, so the same DELETE again is
  recognised as a repeat.

  KEYS[1] the job hash
  ARGV: mark field, mark value, channel, job id, key field, idempotency key ('' for none)
  Returns 1 set, 2 already set by this key, 0 already marked, -1 no such job, -2 finished.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], ARGV[5]) == ARGV[6] then return 2 end
if redis.call('HEXISTS', KEYS[1], 'finishedOn') == 1 then return -2 end
local set = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if set == 1 then
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], ARGV[5], ARGV[6]) end
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return set
