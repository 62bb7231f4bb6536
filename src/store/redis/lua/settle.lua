-- Settle (Account::settle). KEYS[5] the generation's finished-hold key. ARGV[9] generation id,
-- [10] actual quantity ('' = as reserved), [11] usage alert thresholds ("80,100").
-- Replies: ok|replayed {hold, charged, returned, balance} | not_found | state {state}
--        | above {reserved}
-- `returned`: what of the hold went back (`returned_units`).
local function settle()
  local h = find_hold(ARGV[9], K_OWN)
  if not h then return reply('not_found') end
  if h.state == 'settled' then
    return reply('replayed', {
      hold = hold_reply(h), charged = n2s(h.charged),
      returned = n2s(returned_units(h)), balance = balance_reply(),
    })
  end
  if h.state ~= 'held' then return reply('state', { state = h.state }) end
  local actual = h.qty
  if ARGV[10] ~= '' then actual = tonumber(ARGV[10]) end
  if actual > h.qty then return reply('above', { reserved = n2s(h.qty) }) end
  local charge = h.unit * actual
  finalize(h, 'settled', charge, '', K_OWN)
  announce_thresholds(ARGV[11])
  sweep_grants()
  return reply('ok', {
    hold = hold_reply(h), charged = n2s(charge), returned = n2s(returned_units(h)),
    balance = balance_reply(),
  })
end
register('settle', settle, own_generation)
