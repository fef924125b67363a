--[[
  Holds a job's slot on an instance whatever its load (src/comfy/slots.ts).
  KEYS: the set to hold a slot in, then the job's other sets (the caller passes the key count
  first); ARGV: expiry, job id.
]]
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[2]) end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
