--[[
  The check before every write a worker makes to its job (src/worker/persist.ts): -1 when
  the job's hash is gone, -2 when its lock is not this worker's token ('' token: not checked),
  else nil.
]]
local function checkLock(jobKey, lockKey, token)
  if redis.call("EXISTS", jobKey) == 0 then return -1 end
  if token ~= "" and redis.call("GET", lockKey) ~= token then return -2 end
end
