-- Refund (Account::refund). KEYS[5] the generation's finished-hold key, KEYS[6] the refund's
-- record. ARGV[9] generation id, [10] refund id, [11] units (0: all that is left), [12] reason,
-- [13] most live grants.
-- Replies: ok|replayed {refunded, to_allowance, to_credits, refund_grant, balance} | not_found
--        | state {state} | above {requested, refundable} | conflict | too_many
-- The record: "generation|units_requested|refunded|to_allowance|to_credits|grant_id|forget".
local function refund()
  local gen, refund_id, requested, reason = ARGV[9], ARGV[10], tonumber(ARGV[11]), ARGV[12]
  local record = redis.call('GET', KEYS[6])
  if record then
    local rgen, rreq, refunded, to_a, to_c, grant_id, forget =
      string.match(record, '^([^|]*)|(%d+)|(%d+)|(%d+)|(%d+)|([^|]*)|(%w+)$')
    if not forget then broken('refund record reads `' .. record .. '`') end
    if from36(forget) > NOW then
      if rgen ~= gen or tonumber(rreq) ~= requested then return reply('conflict') end
      return reply('replayed', {
        refunded = refunded, to_allowance = to_a, to_credits = to_c, refund_grant = grant_id,
        balance = balance_reply(),
      })
    end
  end
  local h = find_hold(gen, K_OWN)
  if not h then return reply('not_found') end
  if h.state ~= 'settled' then return reply('state', { state = h.state }) end
  local refundable = h.charged - h.refunded
  local units = requested
  if units == 0 then units = refundable end
  if units == 0 or units > refundable then
    return reply('above', { requested = n2s(units), refundable = n2s(refundable) })
  end
  -- Refunds give back the allowance part of the charge first.
  local allowance_left = math.max(h.cfa - h.refunded, 0)
  local of_allowance = math.min(units, allowance_left)
  local of_credits = units - of_allowance
  local to_allowance = 0
  if acct.ce ~= 0 and h.cn == acct.cn then to_allowance = of_allowance end
  local to_credits = units - to_allowance
  local grant_id = ''
  if to_credits > 0 then
    -- ledger::account::refund_grant_id: a digest of an unambiguous encoding of both ids and
    -- the hold's creation time (a generation id reused after retention is another hold).
    grant_id = 'refund:' .. redis.sha1hex(n2s(#gen) .. ':' .. gen .. ':' .. n2s(h.created) .. ':' ..
      refund_id)
    load_grants()
    -- Only a grant made before the prefix was reserved can bear the name: a conflict.
    if grants[grant_id] or tombs[grant_id] then return reply('conflict') end
    if not add_grant(grant_id, 'promotional', to_credits, nil, tonumber(ARGV[13])) then
      return reply('too_many')
    end
  end
  acct.used = acct.used - to_allowance
  acct.ca = acct.ca - of_allowance
  acct.cc = acct.cc - of_credits
  acct_dirty = true
  h.refunded = h.refunded + units
  write('SET', K_OWN, pack_finished(h), 'KEEPTTL')
  local draws = {}
  if to_credits > 0 then draws[1] = { id = grant_id, units = to_credits } end
  emit('hold.refunded', hold_event_id(gen, h.created, 'refunded:' .. refund_id), {
    'gen', gen, 'kind', h.kind, 'model', h.model, 'units', n2s(units), 'fa', n2s(of_allowance),
    'fc', n2s(of_credits), 'added', n2s(to_allowance), 'draws', draws_text(draws),
    'grant', grant_id, 'reason', reason, 'refund', refund_id, 'cycle', n2s(h.cycle),
  })
  write('SET', KEYS[6], gen .. '|' .. n2s(requested) .. '|' .. n2s(units) .. '|' ..
    n2s(to_allowance) .. '|' .. n2s(to_credits) .. '|' .. grant_id .. '|' ..
    b36(NOW + RETENTION_MS), 'PX', RETENTION_MS)
  return reply('ok', {
    refunded = n2s(units), to_allowance = n2s(to_allowance), to_credits = n2s(to_credits),
    refund_grant = grant_id, balance = balance_reply(),
  })
end
register('refund', refund, own_generation)
