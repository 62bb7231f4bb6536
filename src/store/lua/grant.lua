-- GrantCredits: KEYS[5] the grant's tombstone. ARGV[10] grant id, [11] units, [12] source,
-- [13] expires_at_ms ('' = never), [14] most live grants.
-- Replies: {'ok'|'replayed', grant, balance} | {'conflict'} | {'expired'} | {'too_many'}
local function run()
  local id, units, source, exp = ARGV[10], tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])
  sweep_grants()
  local terms = source .. '|' .. n2s(units) .. '|' .. (exp and n2s(exp) or '') .. '|'
  local g = grants[id]
  if g then
    if string.sub(grant_terms(g), 1, #terms) ~= terms then return { 'conflict' } end
    return { 'replayed', grant_reply(g), balance_reply() }
  end
  local tomb = load_tombstone(KEYS[5])
  if tomb then
    if string.sub(tomb, 1, #terms) ~= terms then return { 'conflict' } end
    local created = tonumber(string.sub(tomb, #terms + 1))
    local gone = { id = id, src = source, granted = units, rem = 0, held = 0, exp = exp, created = created }
    return { 'replayed', grant_reply(gone), balance_reply() }
  end
  if exp and exp <= NOW then return { 'expired' } end
  local live = 0
  for _ in pairs(grants) do live = live + 1 end
  if live >= tonumber(ARGV[14]) then return { 'too_many' } end
  g = { id = id, src = source, granted = units, rem = units, held = 0, exp = exp, created = NOW, revoked = false }
  grants[id] = g
  grants_dirty[id] = true
  emit('credits.granted', keyed_id(id, g.created, 'granted'), {
    'grant', id, 'units', n2s(units), 'source', source, 'expires', exp and n2s(exp) or '',
  })
  return { 'ok', grant_reply(g), balance_reply() }
end
return finish(run())
