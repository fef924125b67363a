--[[
  The list index's dangling members (src/api/job-index.ts): `gone` tells whether a member's
  job is gone (no hash, or a hash of a later job with the same id: a reused idempotent id)
  and `drop` removes the member from every set it is in, as derived from the member.
  `base` is the queue's key prefix (`<prefix>:<queue>:`).
]]
local function parse(m)
  return string.match(m, "^(%d+):([^:]+):([^:]*):([^:]*)$")
end
local function gone(base, m)
  local ts, id, o, u = parse(m)
  if not id then return true, nil end
  local stored = redis.call("HGET", base .. id, "timestamp")
  return (not stored) or tonumber(stored) ~= tonumber(ts), id, o, u
end
local function drop(base, m, o, u)
  redis.call("ZREM", base .. "list:all", m)
  if u and u ~= "" then redis.call("ZREM", base .. "list:u:" .. u, m) end
  if o and o ~= "" then
    redis.call("ZREM", base .. "list:o:" .. o .. ":all", m)
    if u and u ~= "" then redis.call("ZREM", base .. "list:o:" .. o .. ":u:" .. u, m) end
  end
end
