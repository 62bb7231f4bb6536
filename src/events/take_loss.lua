-- Clears a group's loss record on one shard, only if it still holds what the caller read and
-- is about to tell the group: a loss the trimmer recorded in between stays for the next
-- Subscribe instead of vanishing untold.
-- KEYS[1]: the shard's losses hash. ARGV[1]: the group. ARGV[2]: the record as read.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
