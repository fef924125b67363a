--[[
  Runs after BullMQ's add in the same MULTI (src/api/enqueue.ts). The first request to create
  the job owns it (HSETNX of its token) and writes the workflow and the body fingerprint, and
  enters the job in the list's index (src/api/job-index.ts); a duplicate add (same id) leaves
  everything alone. Its key count varies (one index set per scope the job is listed in), so
  its name carries none: the caller passes the count.

  KEYS[1] the job hash; KEYS[2..] the index sets
  ARGV: workflow JSON, fingerprint, token, index member,
        then the field names: token, workflow, fingerprint
  Returns { fingerprint, token } as stored, or nil when the add wrote no job.
]]
local tokenField, workflowField, fingerprintField = ARGV[5], ARGV[6], ARGV[7]
if redis.call("HEXISTS", KEYS[1], "data") == 0 then return nil end
if redis.call("HSETNX", KEYS[1], tokenField, ARGV[3]) == 1 then
  redis.call("HSET", KEYS[1], workflowField, ARGV[1], fingerprintField, ARGV[2])
  for i = 2, #KEYS do redis.call("ZADD", KEYS[i], 0, ARGV[4]) end
end
return redis.call("HMGET", KEYS[1], fingerprintField, tokenField)
