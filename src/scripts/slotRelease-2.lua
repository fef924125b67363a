--[[
  Frees a job's slot on an instance and wakes waiting jobs (src/comfy/slots.ts).
  KEYS: the set, the "a slot was freed" channel; ARGV: job id.
]]
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', KEYS[2], KEYS[1]) end
return removed
