--[[
  BullMQ's updateProgress: the job's `progress` field and a `progress` event on the queue's
  events stream, trimmed like BullMQ trims it (the meta hash's opts.maxLenEvents, set to
  10000 when absent, as getOrSetMaxEvents does).
]]
-- forked from BullMQ 6.7.0 commands/updateProgress-3.lua sha256 32508585fe79742cc08d615ea122bc9e73952551ab3fdae71b3246948755b269
-- forked from BullMQ 6.7.0 commands/includes/getOrSetMaxEvents.lua sha256 ec9e059a7d303cff34329453cc4747be9f20bc4824abcb397ca4847c52bac8c4
local function writeProgress(jobKey, eventsKey, metaKey, progress, jobId)
  local maxEvents = redis.call("HGET", metaKey, "opts.maxLenEvents")
  if not maxEvents then
    maxEvents = 10000
    redis.call("HSET", metaKey, "opts.maxLenEvents", maxEvents)
  end
  redis.call("HSET", jobKey, "progress", progress)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "progress", "jobId", jobId, "data", progress)
end
