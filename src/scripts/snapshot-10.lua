--[[
  A job's snapshot in one round trip (src/job/snapshot.ts): the fields of its hash that the
  view needs, its BullMQ state and, for a waiting or prioritized job, the jobs ahead of it.

  The state is BullMQ's getStateV2-8.lua, check for check and in its order, except how `wait`
  is searched: from its tail, where workers take jobs (`RPOPLPUSH wait active` in
  fetchNextJob), and over at most ARGV[2] entries, so the read of a job about to run costs
  little and none scans a whole backlog. A job not among the last ARGV[2] of a longer `wait`
  and in no other set is deeper in `wait` (every BullMQ script moves a job between its sets
  atomically, so a job hash in none of them does not occur); it has at least ARGV[2] jobs
  ahead. Plain jobs run before prioritized ones, which run in ZRANK order.

  KEYS: job hash, completed, failed, delayed, prioritized, active, wait, paused,
        waiting-children, the prefix of the users' parked zsets (all under the queue's hash tag)
  ARGV: job id, scan bound (>= 1), then the hash fields to read (HMGET: the workflow, however
        large, is never read)
  Returns nil for a job with no hash, else { state, jobs ahead (-1: none), field/value list }.
]]
-- forked from BullMQ 6.7.0 commands/getStateV2-8.lua sha256 c5b75f6296af0472df26bf288e913ee445d398b5ba8c7187a830760c7c01e093
local rcall = redis.call
if rcall("EXISTS", KEYS[1]) == 0 then return nil end
local values = rcall("HMGET", KEYS[1], unpack(ARGV, 3))
local hash = {}
for i = 3, #ARGV do
  local v = values[i - 2]
  if v then hash[#hash + 1] = ARGV[i]; hash[#hash + 1] = v end
end
local id, bound = ARGV[1], tonumber(ARGV[2])
local state, ahead = "unknown", -1
if rcall("ZSCORE", KEYS[2], id) then state = "completed"
elseif rcall("ZSCORE", KEYS[3], id) then state = "failed"
elseif rcall("ZSCORE", KEYS[4], id) then state = "delayed"
elseif rcall("ZSCORE", KEYS[5], id) then
  state = "prioritized"
  ahead = rcall("LLEN", KEYS[7]) + rcall("ZRANK", KEYS[5], id)
elseif rcall("LPOS", KEYS[6], id) then state = "active"
else
  local len = rcall("LLEN", KEYS[7])
  -- the index counts from the head even when the search starts at the tail
  local index = rcall("LPOS", KEYS[7], id, "RANK", -1, "MAXLEN", bound)
  if index then state, ahead = "waiting", len - 1 - index
  elseif rcall("LPOS", KEYS[8], id) then state = "waiting"
  elseif rcall("ZSCORE", KEYS[9], id) then state = "waiting-children"
  else
    -- parked by USER_MAX_ACTIVE (src/fair): its user's parked jobs before it, then the
    -- queue's jobs that run before its score when it is unparked
    local user = rcall("HGET", KEYS[1], "fairUser")
    local score = user and rcall("ZSCORE", KEYS[10] .. user, id)
    if score then
      state = "prioritized"
      ahead = rcall("ZRANK", KEYS[10] .. user, id) + rcall("LLEN", KEYS[7])
        + rcall("ZCOUNT", KEYS[5], "-inf", "(" .. score)
    elseif len > bound then state, ahead = "waiting", bound
    end
  end
end
return { state, ahead, hash }
