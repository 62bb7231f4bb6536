-- Takes a fleet task's lease for ARGV[2] ms when nobody holds it, or extends it when ARGV[1]
-- holds it already (a pass that runs long keeps its lease). KEYS[1]: the lease.
-- Returns 1 when ARGV[1] holds the lease now, 0 when someone else does.
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
