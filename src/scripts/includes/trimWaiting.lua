--[[
  A user's waiting zset (F.."w:"..user) holds each of the user's jobs in `prioritized` with
  the same score (set by the enqueue, includes/enqueueFair). BullMQ takes jobs from
  `prioritized` lowest score first, so an entry scored below the queue's head has been taken
  (started, parked) or left otherwise (cancelled, removed): it is dropped with one range
  removal, and an entry at the head's own score is checked in `prioritized` (the round being
  served). Nothing in `prioritized`: nothing waits. Returns the zset's size after.
]]
local function trimWaiting(wkey, pkey)
  local head = redis.call("ZRANGE", pkey, 0, 0, "WITHSCORES")
  if not head[2] then
    redis.call("DEL", wkey)
    return 0
  end
  local h = tonumber(head[2])
  redis.call("ZREMRANGEBYSCORE", wkey, "-inf", h - 1)
  for _, id in ipairs(redis.call("ZRANGEBYSCORE", wkey, h, h)) do
    if not redis.call("ZSCORE", pkey, id) then redis.call("ZREM", wkey, id) end
  end
  return redis.call("ZCARD", wkey)
end
