--[[
  A slot for a job on the least loaded of the candidate ComfyUI instances (src/comfy/slots.ts).
  KEYS: the candidates' sets (configured order), the round-robin counter (the caller passes
  the key count first); ARGV: now, expiry, slots per instance, job id, then per candidate the
  prompts ComfyUI itself reports (its queue length, 0 when unknown). An instance's load is
  the larger of its leases and that (prompts from outside, or a dead worker's prompt still
  running after its lease expired). Returns the chosen key's index (1-based) or 0.
]]
local n = #KEYS - 1
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
  redis.call('ZREM', KEYS[i], ARGV[4])
end
local start = redis.call('INCR', KEYS[n + 1]) % n
local best, bestLoad = 0, 0
for k = 0, n - 1 do
  local i = (start + k) % n + 1
  local load = math.max(redis.call('ZCARD', KEYS[i]), tonumber(ARGV[4 + i]))
  if load < tonumber(ARGV[3]) and (best == 0 or load < bestLoad) then
    best, bestLoad = i, load
  end
end
if best > 0 then redis.call('ZADD', KEYS[best], ARGV[2], ARGV[4]) end
return best
