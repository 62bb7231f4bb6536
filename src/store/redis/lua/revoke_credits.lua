-- RevokeCredits (Account::revoke_credits). ARGV[9] grant id.
-- Replies: ok {revoked, balance} | not_found
-- Takes what is left; units held by open holds stay chargeable, and what a release would give
-- back to a revoked grant is lost. A retry answers what the first call took, also after the
-- grant was dropped; a grant spent to nothing and never revoked answers 0.
local function revoke_credits()
  local id = ARGV[9]
  load_grants()
  local g = grants[id]
  if not g then
    if tombs[id] then return reply('ok', { revoked = n2s(tombs[id].rv or 0), balance = balance_reply() }) end
    return reply('not_found')
  end
  if g.revoked then return reply('ok', { revoked = n2s(g.rv), balance = balance_reply() }) end
  local revoked = g.rem
  g.rem, g.revoked, g.rv = 0, true, revoked
  grants_dirty[id] = true
  acct.cr = acct.cr - revoked
  emit('credits.revoked', grant_event_id(id, g.created, 'revoked'), {
    'grant', id, 'units', n2s(revoked), 'source', g.src,
  })
  sweep_grants()
  return reply('ok', { revoked = n2s(revoked), balance = balance_reply() })
end
register('revoke_credits', revoke_credits)
