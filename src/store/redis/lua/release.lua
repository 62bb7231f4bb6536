-- Release (Account::release). KEYS[5] the generation's finished-hold key. ARGV[9] generation
-- id, [10] reason. Replies: ok|replayed {hold, returned, balance} | not_found | state {state}
-- Releasing an expired hold succeeds with nothing returned: expiry already returned it.
-- `returned`: the cost less the credits that could not go back (Account::release).
local function release()
  local h = find_hold(ARGV[9], K_OWN)
  if not h then return reply('not_found') end
  if h.state == 'settled' then return reply('state', { state = h.state }) end
  if h.state == 'released' then
    return reply('replayed', {
      hold = hold_reply(h), returned = n2s(returned_units(h)), balance = balance_reply(),
    })
  end
  if h.state == 'expired' then
    return reply('ok', { hold = hold_reply(h), returned = '0', balance = balance_reply() })
  end
  finalize(h, 'released', 0, ARGV[10], K_OWN)
  sweep_grants()
  return reply('ok', {
    hold = hold_reply(h), returned = n2s(returned_units(h)), balance = balance_reply(),
  })
end
register('release', release, own_generation)
