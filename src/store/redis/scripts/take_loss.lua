-- Takes a group's loss record from one shard: read and cleared in one step, so what the group
-- is told is exactly what was removed, and a loss the trimmer records a moment later stays for
-- the next Subscribe.
-- KEYS[1]: the shard's losses hash. ARGV[1]: the group. Returns the record, or nil.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return record
