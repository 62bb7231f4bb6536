-- Sweep: expire the due holds of an account nobody touches. The prelude already reclaimed
-- them (and emitted hold.expired); two sweepers running this at once expire each hold once,
-- because the second finds it no longer held. ARGV[10..] are the account's due entries of the
-- shard expiry index; any that is not an open hold any more is dropped from the index.
-- Replies: {'ok', holds_expired}
local function run()
  sweep_grants()
  for i = 10, #ARGV do
    local gen = string.sub(ARGV[i], #ACCOUNT_ID + 2)
    if not redis.call('ZSCORE', K_OPEN, gen) then write('ZREM', K_EXPIRY, ARGV[i]) end
  end
  return { 'ok', RECLAIMED }
end
return finish(run())
