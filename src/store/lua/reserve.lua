-- Reserve: KEYS[5] hold key. ARGV[10] generation id, [11] kind, [12] model, [13] quantity,
-- [14] unit cost, [15] ttl_ms, [16] labels (JSON, kept for events).
-- Replies: {'ok'|'replayed', hold, balance} | {'conflict', kind, model, quantity}
--        | {'denied', plan, open_holds} | {'insufficient', needed, available}
local function run()
  local gen, kind, model = ARGV[10], ARGV[11], ARGV[12]
  local qty, unit, ttl_ms = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
  local cost = unit * qty
  sweep_grants()

  local existing = load_hold(KEYS[5])
  if existing then
    if existing.kind == kind and existing.model == model and existing.qty == qty then
      return { 'replayed', hold_reply(existing), balance_reply() }
    end
    return { 'conflict', existing.kind, existing.model, existing.qty }
  end

  -- Features come from the plan alone (the Rust side rebuilds the exact denial).
  local plan = plan_of(acct.plan)
  local open = open_holds()
  if not plan_allows_model(plan, model) or (kind == 'video' and qty > plan.max_seconds)
    or open >= plan.max_holds then
    return { 'denied', acct.plan, open }
  end

  -- ledger::allocation::allocate: allowance first, then spendable grants in burn order.
  local from_allowance = math.min(cost, allowance_available())
  local rest = cost - from_allowance
  local spendable, credits = {}, 0
  for _, g in ipairs(grants_in_burn_order()) do
    if grant_spendable(g) and g.rem > 0 then
      spendable[#spendable + 1] = g
      credits = credits + g.rem
    end
  end
  if rest > credits then
    return { 'insufficient', cost, allowance_available() + credits }
  end
  local draws, draw_fields = {}, {}
  for _, g in ipairs(spendable) do
    if rest == 0 then break end
    local take = math.min(rest, g.rem)
    g.rem, g.held = g.rem - take, g.held + take
    grants_dirty[g.id] = true
    rest = rest - take
    draws[#draws + 1] = { id = g.id, units = take }
    draw_fields[#draw_fields + 1] = g.id .. '=' .. n2s(take)
  end
  if from_allowance > 0 then
    acct.held = acct.held + from_allowance
    acct_dirty = true
  end

  local h = {
    key = KEYS[5], gen = gen, kind = kind, model = model, qty = qty, unit = unit, cost = cost,
    fa = from_allowance, fc = cost - from_allowance, draws = draws, state = 'held',
    exp = NOW + ttl_ms, created = NOW, charged = 0, cycle = acct.cs, labels = ARGV[16],
  }
  write('HSET', h.key, 'gen', gen, 'kind', kind, 'model', model, 'qty', n2s(qty),
    'unit', n2s(unit), 'cost', n2s(cost), 'fa', n2s(h.fa), 'fc', n2s(h.fc),
    'draw', table.concat(draw_fields, ','), 'state', 'held', 'exp', n2s(h.exp),
    'created', n2s(NOW), 'charged', '0', 'returned', '0', 'cycle', n2s(h.cycle),
    'cn', n2s(acct.cn), 'reason', '', 'labels', ARGV[16])
  hold_event(h, 'hold.reserved', qty, cost, h.fa, h.fc, draws_text(draws))
  write('ZADD', K_OPEN, n2s(h.exp), gen)
  open_changed(1)
  write('ZADD', K_EXPIRY, n2s(h.exp), ACCOUNT_ID .. '/' .. gen)
  return { 'ok', hold_reply(h), balance_reply() }
end
return finish(run())
