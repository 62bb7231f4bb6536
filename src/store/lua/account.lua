-- GetAccount. Replies: {'ok', balance, grants (burn order), open holds (oldest first),
--   lifetime charged from allowance, lifetime charged from credits}
local function run()
  sweep_grants()
  local grant_list = {}
  for _, g in ipairs(grants_in_burn_order()) do grant_list[#grant_list + 1] = grant_reply(g) end
  local holds = {}
  for _, gen in ipairs(redis.call('ZRANGE', K_OPEN, 0, -1)) do
    local h = load_hold(hold_key(gen))
    if h and h.state == 'held' then holds[#holds + 1] = h end
  end
  table.sort(holds, function(a, b)
    if a.created ~= b.created then return a.created < b.created end
    return bytes_less(a.gen, b.gen)
  end)
  local hold_list = {}
  for _, h in ipairs(holds) do hold_list[#hold_list + 1] = hold_reply(h) end
  return { 'ok', balance_reply(), grant_list, hold_list, acct.ca, acct.cc }
end
return finish(run())
