-- RevokeCredits: KEYS[5] the grant's tombstone. ARGV[10] grant id.
-- Replies: {'ok', revoked_units, balance} | {'not_found'}
-- Takes what is left; units held by open holds stay chargeable, and what a release would give
-- back to a revoked grant is gone.
local function run()
  local id = ARGV[10]
  sweep_grants()
  local g = grants[id]
  if not g then
    if load_tombstone(KEYS[5]) then return { 'ok', 0, balance_reply() } end
    return { 'not_found' }
  end
  local revoked = g.rem
  if g.revoked then return { 'ok', 0, balance_reply() } end
  g.rem, g.revoked = 0, true
  grants_dirty[id] = true
  emit('credits.revoked', keyed_id(id, g.created, 'revoked'), {
    'grant', id, 'units', n2s(revoked), 'source', g.src,
  })
  sweep_grants()
  return { 'ok', revoked, balance_reply() }
end
return finish(run())
