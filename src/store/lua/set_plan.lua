-- SetPlan: KEYS[5] request record. ARGV[10] request id, [11] plan, [12] requested anchor_ms
-- ('' = now), [13] anchor day, [14] anchor time of day ms (of the requested anchor, or of NOW).
-- Replies: {'ok'|'replayed', change, effective_at, allowance_added, charge_cents, balance}
--        | {'conflict'}
local function run()
  local target, requested_anchor = ARGV[11], ARGV[12]
  sweep_grants()
  local record = redis.call('HGETALL', KEYS[5])
  local r = {}
  for i = 1, #record, 2 do r[record[i]] = record[i + 1] end
  if #record > 0 and not forgotten(KEYS[5], r.forget) then
    if r.plan ~= target or r.anchor ~= requested_anchor then return { 'conflict' } end
    return { 'replayed', r.change, tonumber(r.eff), tonumber(r.added), tonumber(r.charge), balance_reply() }
  end

  local new, cur, previous = find_plan(target), plan_of(acct.plan), acct.plan
  local change, eff, added, charge = 'unchanged', NOW, 0, 0
  if acct.ce == 0 then
    if target ~= 'none' then
      -- none -> plan: a cycle anchored on the requested moment, with the full allowance.
      change, added = 'started', new.allowance
      acct.plan, acct.sp = target, ''
      acct.ad, acct.at = tonumber(ARGV[13]), tonumber(ARGV[14])
      acct.cs, acct.ce = cycle_containing_now()
      acct.cn = acct.cn + 1
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
    emit(event_types[change], keyed_id(ARGV[10], NOW, change), {
      'plan', target, 'prev', previous, 'cycle', n2s(acct.cs), 'added', n2s(added),
      'charge', n2s(charge), 'effective', n2s(eff),
    })
  end
  write('HSET', KEYS[5], 'plan', target, 'anchor', requested_anchor, 'change', change,
    'eff', n2s(eff), 'added', n2s(added), 'charge', n2s(charge),
    'forget', n2s(NOW + RETENTION_MS))
  write('PEXPIRE', KEYS[5], RETENTION_MS)
  return { 'ok', change, eff, added, charge, balance_reply() }
end
return finish(run())
