-- Quote (Account::quote): what Reserve would answer now; writes nothing, not even the lazy work
-- (its reply is not a success, so `finish()` performs no write). ARGV[9] kind, [10] model,
-- [11] quantity, [12] unit cost.
-- Replies: quote {cost, fa, fc, refusal?: {status: denied|insufficient, ...}, balance}
local function quote()
  local kind, model, qty, unit = ARGV[9], ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
  local cost = unit * qty
  local available = allowance_available()
  local fa = math.min(cost, available)
  local fc = math.min(cost - fa, acct.cr)
  local refusal = check_features(kind, model, qty)
  if not refusal and fa + fc < cost then
    refusal = reply('insufficient', { needed = n2s(cost), available = n2s(available + acct.cr) })
  end
  return reply('quote', {
    cost = n2s(cost), fa = n2s(fa), fc = n2s(fc), refusal = refusal, balance = balance_reply(),
  })
end
register('quote', quote, nil, { 'no-writes' })
