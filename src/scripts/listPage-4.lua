--[[
  One page's candidates of the job list (src/api/job-index.ts), newest first after ARGV[2] (a
  member, '' for the newest): up to ARGV[3] live jobs that may be in public status ARGV[5]
  ('' any), looking at no more than ARGV[4] members; dangling members met on the way are
  dropped.

  `maybe` keeps a superset of the jobs `publicStatus` (job/view.ts) gives that status, from
  BullMQ's sets and, for finished statuses of unfinished jobs (an outcome saved but not yet
  moved, a cancel mark), a plain search of the job's data; the caller decides exactly.

  KEYS: the index, completed, failed, active
  ARGV: base, after, limit, scan bound, status, the cancel mark's field
  Returns { ids, last member looked at or '', more (0/1), dropped }.
]]
--- @include "includes/dangling"
local base, after, limit, scanMax, status, markField = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local function has(text, needle) return text and string.find(text, needle, 1, true) ~= nil end
local function maybe(id)
  if status == "" then return true end
  local key = base .. id
  if redis.call("ZSCORE", KEYS[2], id) then return status == "completed" end
  if redis.call("ZSCORE", KEYS[3], id) then
    if status == "failed" then return true end
    if status ~= "cancelled" then return false end
    local f = redis.call("HMGET", key, "data", "failedReason")
    return has(f[1], "cancelled") or has(f[2], "cancelled")
  end
  local active = redis.call("LPOS", KEYS[4], id)
  if status == "submitted" or status == "running" then return active ~= false end
  if status == "queued" then return true end
  if has(redis.call("HGET", key, "data"), '"status":"' .. status .. '"') then return true end
  return status == "cancelled" and redis.call("HEXISTS", key, markField) == 1
end
local max = after == "" and "+" or ("(" .. after)
local ids, last, scanned, dropped = {}, after, 0, 0
while #ids < limit and scanned < scanMax do
  local batch = redis.call("ZREVRANGEBYLEX", KEYS[1], max, "-", "LIMIT", 0, math.min(100, scanMax - scanned))
  if #batch == 0 then return { ids, "", 0, dropped } end
  for _, m in ipairs(batch) do
    scanned, last = scanned + 1, m
    local isGone, id, o, u = gone(base, m)
    if isGone then
      redis.call("ZREM", KEYS[1], m)
      drop(base, m, o, u)
      dropped = dropped + 1
    elseif maybe(id) then
      ids[#ids + 1] = id
    end
    if #ids >= limit or scanned >= scanMax then break end
  end
  max = "(" .. last
end
local more = #redis.call("ZREVRANGEBYLEX", KEYS[1], "(" .. last, "-", "LIMIT", 0, 1)
return { ids, last, more, dropped }
