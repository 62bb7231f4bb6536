-- ExpireDue (the sweeper; Account::due_holds and Account::reclaim_expired): expire the due
-- holds of an account nobody touches. `load_and_touch()` already reclaimed them (and emitted
-- hold.expired) into their declared keys; two sweepers running this at once expire each hold
-- once, because the second finds it no longer open. args[9] is the mode, args[10..] the
-- account's entries of the shard expiry index (`<account>/<gen>`), keys[5..] their
-- finished-hold keys, in the same order. Mode `move`: the entries are holds another call found
-- expired (scored MOVE_SCORE); they are moved to their keys and nothing else is written. Mode
-- `expire`: the entries are due; an entry whose hold another call found expired is moved to
-- its key, any other that is not an open hold any more is dropped.
-- Replies: ok {expired} | moved {expired: 0}
local function expire_due()
  -- No open hold was due: the entries are holds another call found expired (or stale ones).
  -- Then only they are moved and nothing else this call computed is written, so the lazy work
  -- (a rollover, a grant's expiry) waits for the account's next call, as on the memory store,
  -- whose sweeper never visits such an account. Moving writes no ledger state and cannot break
  -- an invariant, so it is done at once rather than queued for `finish()`, which writes nothing
  -- for the `moved` reply.
  local moved_only = ARGV[9] == 'move' or RECLAIMED == 0
  local perform = moved_only and redis.call or write
  -- The state the moves are made in: as loaded when nothing else is written.
  local state = moved_only and LOADED_STATE and cmsgpack.unpack(LOADED_STATE) or acct
  local moved = false
  -- Check, then write (the moves below run at once): every record to move must read.
  for i = 10, #ARGV do
    local v = state.x[string.sub(ARGV[i], #ACCOUNT_ID + 2)]
    if v and not from36(string.match(v, '|(%w+)$') or '') then
      broken('expired hold ' .. ARGV[i] .. ' reads `' .. v .. '`')
    end
  end
  for i = 10, #ARGV do
    local gen = string.sub(ARGV[i], #ACCOUNT_ID + 2)
    if state.x[gen] then
      move_expired(state, gen, KEYS[i - 5], perform)
      moved = true
    elseif not OPEN_RAW[gen] and not HOLDS[gen] then
      perform('ZREM', K_EXPIRY, ARGV[i])
    end
  end
  if moved_only then
    if moved then redis.call('HSET', K_ACCOUNT, 's', cmsgpack.pack(state)) end
    return reply('moved', { expired = '0' })
  end
  if moved then acct_dirty = true end
  return reply('ok', { expired = n2s(RECLAIMED) })
end

-- The due entries' generations and their finished-hold keys.
local function due_generations(keys, args)
  local finished = {}
  for i = 10, #args do
    finished[string.sub(args[i], #args[2] + 2)] = keys[i - 5]
  end
  return finished
end

register('expire_due', expire_due, due_generations)
