-- Extend (Account::extend). KEYS[5] the generation's finished-hold key. ARGV[9] generation id,
-- [10] ttl_ms, [11] max lifetime ms. Replies: ok {hold} | not_found | state {state}
-- The new expiry is NOW + ttl, capped at the hold's total lifetime, and never earlier than
-- the current one.
local function extend()
  local h = find_hold(ARGV[9], K_OWN)
  if not h then return reply('not_found') end
  if h.state ~= 'held' then return reply('state', { state = h.state }) end
  local ttl_ms, max_lifetime_ms = tonumber(ARGV[10]), tonumber(ARGV[11])
  local exp = math.min(NOW + ttl_ms, h.created + max_lifetime_ms)
  if exp > h.exp then
    h.exp = exp
    OPEN_RAW[h.gen] = pack_open(h)
    acct_dirty = true
    write('ZADD', K_EXPIRY, n2s(exp), ACCOUNT_ID .. '/' .. h.gen)
    emit('hold.extended', hold_event_id(h.gen, h.created, 'extended:' .. n2s(exp)), {
      'gen', h.gen, 'kind', h.kind, 'model', h.model, 'qty', n2s(h.qty), 'expires', n2s(exp),
      'labels', hold_labels(h),
    })
  end
  return reply('ok', { hold = hold_reply(h) })
end
register('extend', extend, own_generation)
