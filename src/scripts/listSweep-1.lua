--[[
  The list index's sweep (src/api/job-index.ts): from the oldest member up, drops dangling
  ones, stopping at the first member created at or after ARGV[2] (ms: no job that young has
  been removed by retention) or after ARGV[3] members.

  KEYS: the all-jobs index
  ARGV: base, cutoff ms, batch, after ('' from the oldest)
  Returns { dropped, last member looked at, or '' when done }.
]]
--- @include "includes/dangling"
local base, cutoff, batch, after = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local min = after == "" and "-" or ("(" .. after)
local dropped = 0
local members = redis.call("ZRANGEBYLEX", KEYS[1], min, "+", "LIMIT", 0, batch)
for _, m in ipairs(members) do
  local ts = tonumber(string.match(m, "^(%d+):") or "0")
  if ts >= cutoff then return { dropped, "" } end
  local isGone, _, o, u = gone(base, m)
  if isGone then drop(base, m, o, u); dropped = dropped + 1 end
end
if #members < batch then return { dropped, "" } end
return { dropped, members[#members] }
