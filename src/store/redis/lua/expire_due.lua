-- ExpireDue (the sweeper): expire the due holds of an account nobody touches. `begin()` already
-- reclaimed them (and emitted hold.expired) into their declared keys; two sweepers running this
-- at once expire each hold once, because the second finds it no longer open. args[9..] are the
-- account's due entries of the shard expiry index (`<account>/<gen>`), keys[5..] their
-- finished-hold keys, in the same order. An entry whose hold another call found expired is
-- moved to its key; any other that is not an open hold any more is dropped from the index.
-- Replies: ok {expired}
local function expire_due()
  for i = 9, #ARGV do
    local gen = string.sub(ARGV[i], #ACCOUNT_ID + 2)
    if EXPIRED_RAW[gen] then
      move_expired(gen, KEYS[i - 4])
    elseif not OPEN_RAW[gen] and not HOLDS[gen] then
      write('ZREM', K_EXPIRY, ARGV[i])
    end
  end
  return reply('ok', { expired = n2s(RECLAIMED) })
end

-- The due entries' generations and their finished-hold keys.
local function due_generations(keys, args)
  local finished = {}
  for i = 9, #args do
    finished[string.sub(args[i], #args[2] + 2)] = keys[i - 4]
  end
  return finished
end

register('expire_due', expire_due, due_generations)
