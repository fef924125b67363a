--[[
  Removes members of a user's active set (F.."a:"..user) whose job is finished or gone:
  BullMQ's own state (`finishedOn`, written by moveToFinished; a removed job has no hash).
  `prefix` is the prefix of job hashes. Returns the set's size after.
]]
local function healActive(akey, prefix)
  for _, id in ipairs(redis.call("SMEMBERS", akey)) do
    local jkey = prefix .. id
    if redis.call("EXISTS", jkey) == 0 or redis.call("HEXISTS", jkey, "finishedOn") == 1 then
      redis.call("SREM", akey, id)
    end
  end
  return redis.call("SCARD", akey)
end
