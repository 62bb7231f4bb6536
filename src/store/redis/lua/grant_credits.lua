-- GrantCredits (Account::grant_credits). ARGV[9] grant id, [10] units, [11] source,
-- [12] expires_at_ms ('' = never), [13] most live grants.
-- Replies: ok|replayed {grant, balance} | conflict | expired | too_many
local function grant_credits()
  local id, units, source, exp = ARGV[9], tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12])
  load_grants()
  local terms = source .. '|' .. n2s(units) .. '|' .. (exp and n2s(exp) or '') .. '|'
  local g = grants[id]
  if g then
    if string.sub(grant_terms(g), 1, #terms) ~= terms then return reply('conflict') end
    return reply('replayed', { grant = grant_reply(g), balance = balance_reply() })
  end
  local tomb = tombs[id]
  if tomb then
    if string.sub(tomb.terms, 1, #terms) ~= terms then return reply('conflict') end
    local created = tonumber(string.sub(tomb.terms, #terms + 1))
    local gone = { id = id, src = source, granted = units, rem = 0, held = 0, exp = exp, created = created }
    return reply('replayed', { grant = grant_reply(gone), balance = balance_reply() })
  end
  if exp and exp <= NOW then return reply('expired') end
  g = add_grant(id, source, units, exp, tonumber(ARGV[13]))
  if not g then return reply('too_many') end
  emit('credits.granted', grant_event_id(id, g.created, 'granted'), {
    'grant', id, 'units', n2s(units), 'source', source, 'expires', exp and n2s(exp) or '',
  })
  return reply('ok', { grant = grant_reply(g), balance = balance_reply() })
end
register('grant_credits', grant_credits)
