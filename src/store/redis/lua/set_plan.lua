-- SetPlan (Account::set_plan). KEYS[5] the request's record. ARGV[9] request id, [10] plan,
-- [11] requested anchor_ms ('' = now), [12] anchor day, [13] anchor time of day ms (of the
-- requested anchor, or of NOW).
-- Replies: ok|replayed {change, effective, added, charge, balance} | conflict | unknown_plan
-- The record: "plan|requested_anchor|change|effective|added|charge|forget_ms".
local function set_plan()
  local target, requested_anchor = ARGV[10], ARGV[11]
  local record = redis.call('GET', K_OWN)
  if record then
    local plan, anchor, change, eff, added, charge, forget =
      string.match(record, '^([^|]*)|([^|]*)|([^|]*)|(%d+)|(%d+)|(%d+)|(%d+)$')
    if not forget then broken('plan request reads `' .. record .. '`') end
    if tonumber(forget) > NOW then
      if plan ~= target or anchor ~= requested_anchor then return reply('conflict') end
      return reply('replayed', {
        change = change, effective = eff, added = added, charge = charge, balance = balance_reply(),
      })
    end
  end

  -- Checked after a replay is answered: a retried SetPlan gets its first answer after a reload
  -- that dropped the plan.
  local new = find_plan(target)
  if not new then return reply('unknown_plan') end
  -- Prorated from the terms the account has (`pp`, `pa`), not from what the catalog says now.
  local cur, previous = { price = acct.pp, allowance = acct.pa }, acct.plan
  local change, eff, added, charge = 'unchanged', NOW, 0, 0
  if acct.ce == 0 then
    if target ~= 'none' then
      -- none -> plan: a cycle anchored on the requested moment, with the full allowance.
      change, added = 'started', new.allowance
      acct.plan, acct.pp, acct.pa = target, new.price, new.allowance
      acct.sp, acct.spp, acct.spa = '', 0, 0
      acct.ad, acct.at = tonumber(ARGV[12]), tonumber(ARGV[13])
      acct.cs, acct.ce = cycle_containing_now()
      acct.cn = acct.cn + 1
      acct.tp = 0
      acct.tot, acct.used, acct.held = new.allowance, 0, 0
      acct_dirty = true
    end
  elseif target == acct.plan then
    if acct.sp ~= '' then
      change, acct.sp, acct_dirty = 'scheduled_change_cancelled', '', true
      acct.spp, acct.spa = 0, 0
    end
  elseif new.price > cur.price then
    -- Upgrade: at once, the allowance grows by the prorated difference.
    local remaining, length = acct.ce - NOW, acct.ce - acct.cs
    change = 'upgraded'
    added = prorate(math.max(new.allowance - cur.allowance, 0), remaining, length)
    charge = prorate(new.price - cur.price, remaining, length)
    acct.plan, acct.pp, acct.pa = target, new.price, new.allowance
    acct.sp, acct.spp, acct.spa = '', 0, 0
    acct.tot = acct.tot + added
    acct_dirty = true
  else
    -- Downgrade or cancel: at the end of the cycle; nothing else changes now.
    change, eff = 'downgrade_scheduled', acct.ce
    acct.sp, acct.spp, acct.spa, acct_dirty = target, new.price, new.allowance, true
  end
  local event_types = {
    started = 'plan.changed', upgraded = 'plan.upgraded',
    downgrade_scheduled = 'plan.downgrade_scheduled', scheduled_change_cancelled = 'plan.changed',
  }
  if event_types[change] then
    emit(event_types[change], keyed_id(ARGV[9], NOW, change), {
      'plan', target, 'prev', previous, 'cycle', n2s(acct.cs), 'added', n2s(added),
      'charge', n2s(charge), 'effective', n2s(eff),
    })
  end
  write('SET', K_OWN, target .. '|' .. requested_anchor .. '|' .. change .. '|' .. n2s(eff) ..
    '|' .. n2s(added) .. '|' .. n2s(charge) .. '|' .. n2s(NOW + RETENTION_MS), 'PX', RETENTION_MS)
  return reply('ok', {
    change = change, effective = n2s(eff), added = n2s(added), charge = n2s(charge),
    balance = balance_reply(),
  })
end
register('set_plan', set_plan)
