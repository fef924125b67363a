--[[
  One priority band of BullMQ's prioritized zset: a job's score there is
  priority * 2^32 + a tag below 2^32 (BullMQ's own counter; the fair scripts' round-robin
  tag). Scores and BAND stay Lua numbers (doubles, exact below 2^53), never strings
  (Lua's tostring keeps 14 digits).
]]
-- follows BullMQ 6.7.0 commands/includes/getPriorityScore.lua sha256 2543a3e682c15d9d8466b633aeb3a6d54a813ec23b5aa7aaf636457d62610206
local BAND = 4294967296
