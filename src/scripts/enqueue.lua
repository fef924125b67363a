--[[
  The enqueue's own step (src/api/enqueue.ts), in the same MULTI right after BullMQ's add
  (one EVALSHA). The first request to create the job owns it (HSETNX of its token) and
  writes the workflow and the body fingerprint, enters the job in the list's index
  (src/api/job-index.ts) and, with fairness or a queued limit, in its user's waiting zset,
  tagged (includes/enqueueFair); a duplicate add (same id) leaves everything alone. A
  reservation of the queued limit (fairReserve-6.lua) is dropped either way.
  The key count varies (the caller passes it first).

  KEYS: job hash, the index sets (ARGV[5] of them), then with users tracked: prioritized,
        F.."vt", F.."w:"..user, F.."users", F.."r:"..user
  ARGV: workflow JSON, fingerprint, token, index member, number of index sets, mode ("":
        none, "queued": the waiting zset only, "fair": tagged too), band (BullMQ priority),
        user, job id, "1" when a reservation was made, then the job hash's fields: the
        workflow's, the fingerprint's, the token's
  Returns { fingerprint, token } as stored, or nil when the add wrote no job.
]]
--- @include "includes/enqueueFair"
local job = KEYS[1]
local f = 2 + tonumber(ARGV[5])
local workflowField, fingerprintField, tokenField = ARGV[11], ARGV[12], ARGV[13]
if ARGV[10] == "1" then redis.call("ZREM", KEYS[f + 4], ARGV[9]) end
if redis.call("HEXISTS", job, "data") == 0 then return nil end
if redis.call("HSETNX", job, tokenField, ARGV[3]) == 0 then
  return redis.call("HMGET", job, fingerprintField, tokenField)
end
for i = 2, f - 1 do redis.call("ZADD", KEYS[i], 0, ARGV[4]) end
if ARGV[6] == "" then
  redis.call("HSET", job, workflowField, ARGV[1], fingerprintField, ARGV[2])
else
  local fair = ARGV[6] == "fair"
  local tag = enqueueFair(KEYS[f], KEYS[f + 1], KEYS[f + 2], KEYS[f + 3], ARGV[7], ARGV[8], ARGV[9], fair)
  if fair then
    redis.call("HSET", job, workflowField, ARGV[1], fingerprintField, ARGV[2],
      "fairUser", ARGV[8], "fairTag", tag)
  else
    redis.call("HSET", job, workflowField, ARGV[1], fingerprintField, ARGV[2],
      "fairUser", ARGV[8])
  end
end
return { ARGV[2], ARGV[3] }
