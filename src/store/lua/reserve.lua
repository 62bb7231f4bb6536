-- Reserve (Account::reserve). KEYS[5] the generation's finished-hold key. ARGV[9] generation
-- id, [10] kind, [11] model, [12] quantity, [13] unit cost, [14] ttl_ms, [15] labels (JSON).
-- Replies: ok|replayed {hold, balance} | conflict {kind, model, qty} | denied {plan, open}
--        | insufficient {needed, available}
local function run()
  local gen, kind, model = ARGV[9], ARGV[10], ARGV[11]
  local qty, unit, ttl_ms = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
  local cost = unit * qty

  local existing = find_hold(gen, K_OWN)
  if existing then
    if existing.kind == kind and existing.model == model and existing.qty == qty then
      return reply('replayed', { hold = hold_reply(existing), balance = balance_reply() })
    end
    return reply('conflict', { kind = existing.kind, model = existing.model, qty = n2s(existing.qty) })
  end

  -- Features come from the plan alone (the Rust side rebuilds the exact denial).
  local plan = plan_of(acct.plan)
  if not plan_allows_model(plan, model) or (kind == 'video' and qty > plan.max_seconds)
    or OPEN_COUNT >= plan.max_holds then
    return reply('denied', { plan = acct.plan, open = n2s(OPEN_COUNT) })
  end

  -- ledger::allocation::allocate: allowance first, then spendable grants in burn order. The
  -- account counts its spendable credits, so grants are read only when they are drawn from.
  local available = allowance_available()
  local from_allowance = math.min(cost, available)
  local rest = cost - from_allowance
  if rest > acct.cr then
    return reply('insufficient', { needed = n2s(cost), available = n2s(available + acct.cr) })
  end
  local draws = {}
  if rest > 0 then
    for _, g in ipairs(grants_in_burn_order()) do
      if rest == 0 then break end
      if grant_spendable(g) and g.rem > 0 then
        local take = math.min(rest, g.rem)
        g.rem, g.held = g.rem - take, g.held + take
        grants_dirty[g.id] = true
        rest = rest - take
        draws[#draws + 1] = { id = g.id, units = take }
      end
    end
    if rest > 0 then broken('credits counted ' .. n2s(acct.cr) .. ' are not in the grants') end
  end
  acct.held = acct.held + from_allowance
  acct.cr = acct.cr - (cost - from_allowance)
  acct.ch = acct.ch + (cost - from_allowance)

  local h = {
    gen = gen, state = 'held', kind = kind, model = model, qty = qty, unit = unit, cost = cost,
    fa = from_allowance, fc = cost - from_allowance, draws = draws, exp = NOW + ttl_ms,
    created = NOW, charged = 0, cycle = acct.cs, cn = acct.cn, labels = ARGV[15],
  }
  HOLDS[gen] = h
  OPEN_RAW[gen] = pack_open(h)
  OPEN_COUNT = OPEN_COUNT + 1
  set_account_field('h:' .. gen, OPEN_RAW[gen])
  if h.labels ~= '{}' then
    LABELS_RAW[gen] = h.labels
    set_account_field('l:' .. gen, h.labels)
  end
  hold_event(h, 'hold.reserved', qty, cost, h.fa, draws, '', 0)
  write('ZADD', K_EXPIRY, n2s(h.exp), ACCOUNT_ID .. '/' .. gen)
  return reply('ok', { hold = hold_reply(h), balance = balance_reply() })
end
return finish(run())
