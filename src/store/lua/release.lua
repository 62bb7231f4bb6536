-- Release: KEYS[5] hold key. ARGV[10] generation id, [11] reason.
-- Replies: {'ok'|'replayed', hold, returned, balance} | {'not_found'} | {'state', state}
-- Releasing an expired hold succeeds with nothing returned: expiry already returned it.
local function run()
  local h = load_hold(KEYS[5])
  if not h then return { 'not_found' } end
  if h.state == 'settled' then return { 'state', h.state } end
  sweep_grants()
  if h.state == 'released' then
    return { 'replayed', hold_reply(h), h.returned, balance_reply() }
  end
  if h.state == 'expired' then
    return { 'ok', hold_reply(h), 0, balance_reply() }
  end
  finalize(h, 'released', 0, ARGV[11], { 'returned', n2s(h.cost), 'reason', ARGV[11] })
  sweep_grants()
  return { 'ok', hold_reply(h), h.cost, balance_reply() }
end
return finish(run())
