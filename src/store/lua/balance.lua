-- GetBalance. Replies: ok {balance}
local function run()
  return reply('ok', { balance = balance_reply() })
end
return finish(run())
