-- GetBalance. Replies: {'ok', balance}
local function run()
  sweep_grants()
  return { 'ok', balance_reply() }
end
return finish(run())
