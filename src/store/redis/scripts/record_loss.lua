#!lua flags=allow-oom
-- Adds what one cap batch dropped before a group read it to the group's loss record on the
-- shard, `<first ack id> <last ack id> <count>`, in one step (two trimmers, or a trimmer and a
-- Subscribe taking the record, never interleave). Runs on a full Redis too: the batch's trim
-- that follows is what frees memory.
-- KEYS[1]: the shard's losses hash. ARGV: group, first ack id, last ack id, count.
-- Returns 1 when recorded, 0 when the batch was recorded already.

-- An ack id `<shard>/<ms>-<seq>` as its stream position.
local function position(ack_id)
  local ms, seq = string.match(ack_id, '/(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function before(a, b)
  local a_ms, a_seq = position(a)
  local b_ms, b_seq = position(b)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

local first, last, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local old_first, old_last, old_count = string.match(old, '^(%S+) (%S+) (%d+)$')
  if old_first then
    -- Batches are cut from the front of the stream, so a new one ends after every earlier
    -- one: one that does not was recorded already (a pass stopped before its trim, run again).
    if not before(old_last, last) then
      return 0
    end
    if before(old_first, first) then
      first = old_first
    end
    count = count + tonumber(old_count)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], first .. ' ' .. last .. ' ' .. count)
return 1
