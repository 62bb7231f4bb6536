-- GetBalance. Replies: ok {balance}
local function balance()
  return reply('ok', { balance = balance_reply() })
end
register('balance', balance)
