-- Extend: KEYS[5] hold key. ARGV[10] generation id, [11] ttl_ms, [12] max lifetime ms.
-- Replies: {'ok', hold} | {'not_found'} | {'state', state}
-- The new expiry is NOW + ttl, capped at the hold's total lifetime, and never earlier than
-- the current one.
local function run()
  local h = load_hold(KEYS[5])
  if not h then return { 'not_found' } end
  if h.state ~= 'held' then return { 'state', h.state } end
  local ttl_ms, max_lifetime_ms = tonumber(ARGV[11]), tonumber(ARGV[12])
  local exp = math.max(h.exp, math.min(NOW + ttl_ms, h.created + max_lifetime_ms))
  if exp ~= h.exp then
    h.exp = exp
    write('HSET', h.key, 'exp', n2s(exp))
    write('ZADD', K_OPEN, n2s(exp), h.gen)
    write('ZADD', K_EXPIRY, n2s(exp), ACCOUNT_ID .. '/' .. h.gen)
    emit('hold.extended', keyed_id(h.gen, h.created, 'extended:' .. n2s(exp)), {
      'gen', h.gen, 'kind', h.kind, 'model', h.model, 'qty', n2s(h.qty), 'expires', n2s(exp),
      'labels', h.labels or '{}',
    })
  end
  return { 'ok', hold_reply(h) }
end
return finish(run())
