-- Sweep: expire the due holds of an account nobody touches. The prelude already reclaimed
-- them (and emitted hold.expired); two sweepers running this at once expire each hold once,
-- because the second finds it no longer open. ARGV[9..] are the account's due entries of the
-- shard expiry index; any that is not an open hold any more is dropped from the index.
-- Replies: ok {expired}
local function run()
  for i = 9, #ARGV do
    local gen = string.sub(ARGV[i], #ACCOUNT_ID + 2)
    if not OPEN_RAW[gen] then write('ZREM', K_EXPIRY, ARGV[i]) end
  end
  return reply('ok', { expired = n2s(RECLAIMED) })
end
return finish(run())
