-- SetPlan (Account::set_plan). KEYS[5] the request's record. ARGV[9] request id, [10] plan,
-- [11] requested anchor_ms ('' = now), [12] anchor day, [13] anchor time of day ms (of the
-- requested anchor, or of NOW).
-- Replies: ok|replayed {change, effective, added, charge, balance} | conflict
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

  local new, cur, previous = find_plan(target), plan_of(acct.plan), acct.plan
  local change, eff, added, charge = 'unchanged', NOW, 0, 0
  if acct.ce == 0 then
    if target ~= 'none' then
      -- none -> plan: a cycle anchored on the requested moment, with the full allowance.
      change, added = 'started', new.allowance
      acct.plan, acct.sp = target, ''
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
    end
  elseif new.price > cur.price then
    -- Upgrade: at once, the allowance grows by the prorated difference.
    local remaining, length = acct.ce - NOW, acct.ce - acct.cs
    change = 'upgraded'
    added = prorate(math.max(new.allowance - cur.allowance, 0), remaining, length)
    charge = prorate(new.price - cur.price, remaining, length)
    acct.plan, acct.sp = target, ''
    acct.tot = acct.tot + added
    acct_dirty = true
  else
    -- Downgrade or cancel: at the end of the cycle; nothing else changes now.
    change, eff = 'downgrade_scheduled', acct.ce
    acct.sp, acct_dirty = target, true
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
