-- Settle: KEYS[5] hold key. ARGV[10] generation id, [11] actual quantity ('' = as reserved).
-- Replies: {'ok'|'replayed', hold, charged, returned, balance} | {'not_found'}
--        | {'state', state} | {'above', reserved_quantity}
local function run()
  local h = load_hold(KEYS[5])
  if not h then return { 'not_found' } end
  if h.state == 'settled' then
    sweep_grants()
    return { 'replayed', hold_reply(h), h.charged, h.cost - h.charged, balance_reply() }
  end
  if h.state ~= 'held' then return { 'state', h.state } end
  local actual = h.qty
  if ARGV[11] ~= '' then actual = tonumber(ARGV[11]) end
  if actual > h.qty then return { 'above', h.qty } end
  local charge = h.unit * actual
  finalize(h, 'settled', charge, '', { 'returned', n2s(h.cost - charge) })
  sweep_grants()
  return { 'ok', hold_reply(h), charge, h.cost - charge, balance_reply() }
end
return finish(run())
