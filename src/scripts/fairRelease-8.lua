--[[
  Frees a user's slots held by finished or removed jobs and moves as many parked jobs as
  there are free slots back where BullMQ takes them, in their order (`prioritized` with
  their old score; a job without a priority to the front of `wait`), waking workers with
  BullMQ's marker. Run when a job of the user ends, and by the periodic sweep
  (src/fair/index.ts createFairWorker). A user with nothing left leaves the users set.

  KEYS: F.."a:"..user, F.."p:"..user, F.."w:"..user, F.."max-active", F.."users",
        prioritized, wait, marker
  ARGV: user, default limit, prefix of job hashes
  Returns the number of jobs unparked.
]]
-- follows BullMQ 6.7.0 commands/includes/addBaseMarkerIfNeeded.lua sha256 bbdfb3922acec0e812a1f99988160bb7faab8099bf402d3cfc2dc96f81b6c00f
--- @include "includes/band"
--- @include "includes/trimWaiting"
--- @include "includes/healActive"
--- @include "includes/limitOf"
local limit = limitOf(KEYS[4], ARGV[1], ARGV[2])
local n = healActive(KEYS[1], ARGV[3])
local w = trimWaiting(KEYS[3], KEYS[6])
local free = limit and (limit - n) or redis.call("ZCARD", KEYS[2])
local moved = 0
while free > 0 do
  local top = redis.call("ZPOPMIN", KEYS[2])
  if not top[1] then break end
  if redis.call("EXISTS", ARGV[3] .. top[1]) == 1 then
    local score = tonumber(top[2])
    if score >= BAND then redis.call("ZADD", KEYS[6], score, top[1])
    else redis.call("RPUSH", KEYS[7], top[1]) end
    moved = moved + 1
    free = free - 1
  end
end
if moved > 0 then redis.call("ZADD", KEYS[8], 0, "0") end
if n == 0 and w == 0 and redis.call("ZCARD", KEYS[2]) == 0 then
  redis.call("SREM", KEYS[5], ARGV[1])
end
return moved
