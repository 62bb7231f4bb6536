-- GetAccount. Replies: ok {balance, grants (burn order), holds (open, oldest first),
--   charged_allowance, charged_credits}
local function account()
  local grant_list = {}
  for _, g in ipairs(grants_in_burn_order()) do grant_list[#grant_list + 1] = grant_reply(g) end
  local holds = {}
  for gen in pairs(OPEN_RAW) do holds[#holds + 1] = open_hold(gen) end
  table.sort(holds, function(a, b)
    if a.created ~= b.created then return a.created < b.created end
    return bytes_less(a.gen, b.gen)
  end)
  local hold_list = {}
  for _, h in ipairs(holds) do hold_list[#hold_list + 1] = hold_reply(h) end
  return reply('ok', {
    balance = balance_reply(), grants = grant_list, holds = hold_list,
    charged_allowance = n2s(acct.ca), charged_credits = n2s(acct.cc),
  })
end
register('account', account)
