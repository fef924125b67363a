--[[
  A user's limit: the user's field of the override hash, else the default; nil (no limit)
  when it is 0 or less.
]]
local function limitOf(hkey, user, default)
  local v = tonumber(redis.call("HGET", hkey, user) or default)
  if v == nil or v <= 0 then return nil end
  return v
end
