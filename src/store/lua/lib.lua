-- Shared prelude of every quota-sidecar script: state access and the Lua twin of the ledger
-- rules in src/ledger (the memory store runs the Rust originals; one conformance suite keeps the
-- two identical). Each operation file defines `run()` and ends with `return finish(run())`.
--
-- Calling convention (built by src/store/redis.rs):
--   KEYS[1] account hash   KEYS[2] grants hash   KEYS[3] open-holds zset
--   KEYS[4] shard expiry zset   KEYS[5] the operation's own key (hold, request, tombstone)
--   ARGV[1] now_ms   ARGV[2] account id   ARGV[3] plan table   ARGV[4..7] month window
--   ARGV[8] retention_ms   ARGV[9] key prefix of the shard   ARGV[10..] operation arguments
--
-- Numbers: Lua numbers are doubles; the Rust side bounds every amount so sums stay below 2^53,
-- and numbers are written with '%d' (tostring would switch to exponent notation).
--
-- Check, then write: Redis does not roll a script back, so no operation writes as it goes.
-- Every write is queued with `write()` and reads go through the tables loaded here (holds,
-- tombstones, the open-hold count), which the queued writes keep current. `finish()` checks
-- every invariant and only then performs the writes, and only for a successful reply: a refused
-- call, or one that raises an error, writes nothing at all.

local NOW = tonumber(ARGV[1])
local ACCOUNT_ID = ARGV[2]
local WINDOW = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]) }
local RETENTION_MS = tonumber(ARGV[8])
local PREFIX = ARGV[9]
local K_ACCOUNT, K_GRANTS, K_OPEN, K_EXPIRY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- The shard's event stream (same hash tag, so the same slot as every other key here).
local K_EVENTS = PREFIX .. 'events'
local DAY_MS = 86400000

local function n2s(n)
  return string.format('%d', n)
end

local WRITES = {}
-- Queues a Redis write for `finish()`.
local function write(...)
  WRITES[#WRITES + 1] = { ... }
end

-- Plan table: "id,price_cents,allowance,max_holds,max_video_seconds,model model;...". Only the
-- plans a call needs are read from it (a plain find, then one anchored match): parsing the whole
-- table up front was about half of the fixed cost of every call.
local PLANS = {}

-- The plan `id` of the table, or nil when the catalog has no such plan.
local function find_plan(id)
  local known = PLANS[id]
  if known ~= nil then return known or nil end
  local plan = false
  -- ';' before the id: a whole entry, not the tail of another id.
  local at = string.find(';' .. ARGV[3], ';' .. id .. ',', 1, true)
  if at then
    local price, allowance, holds, seconds, models =
      string.match(ARGV[3], '^[^,;]+,(%d+),(%d+),(%d+),(%d+),([^;]*);', at)
    if price then
      plan = {
        id = id, price = tonumber(price), allowance = tonumber(allowance),
        max_holds = tonumber(holds), max_seconds = tonumber(seconds), models = ' ' .. models .. ' ',
      }
    end
  end
  PLANS[id] = plan
  return plan or nil
end

-- A plan removed from the catalog behaves like `none` (as in Catalog::check_features).
local function plan_of(id)
  return find_plan(id) or find_plan('none')
end

local function plan_allows_model(plan, model)
  return string.find(plan.models, ' ' .. model .. ' ', 1, true) ~= nil
end

-- Byte-wise string order, as Rust compares strings (Lua's `<` follows the server's locale).
local function bytes_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- floor(n / d) exactly, for integers n < 2^53 and d > 0.
local function exact_div(n, d)
  local q = math.floor(n / d)
  while q * d > n do q = q - 1 end
  while (q + 1) * d <= n do q = q + 1 end
  return q
end

-- ledger::proration::prorate
local function prorate(delta, remaining_ms, cycle_ms)
  local remaining_s = exact_div(math.max(remaining_ms, 0), 1000)
  local cycle_s = exact_div(cycle_ms, 1000)
  if cycle_s <= 0 then return 0 end
  if remaining_s > cycle_s then remaining_s = cycle_s end
  return exact_div(delta * remaining_s, cycle_s)
end

---------------------------------------------------------------------------------------------
-- Account: plan, scheduled plan, anchor, cycle and allowance counters. ce == 0: no cycle.

-- ca/cc: lifetime units charged from allowance / from credits, for reconciliation with events.
-- cn: the cycle number; every rollover and plan start increments it, and holds pin their cycle
-- by it (two cycles may start at the same instant).
local acct = {
  plan = 'none', sp = '', ad = 0, at = 0, cs = 0, ce = 0, tot = 0, used = 0, held = 0, seq = 0,
  ca = 0, cc = 0, cn = 0,
}
local acct_dirty = false
-- Whether the account was stored before cycles were numbered (its open holds carry no `cn`).
local UNNUMBERED = false
do
  local raw = redis.call('HGETALL', K_ACCOUNT)
  local numbered = false
  for i = 1, #raw, 2 do
    local k, v = raw[i], raw[i + 1]
    if k == 'plan' or k == 'sp' then
      acct[k] = v
    else
      acct[k] = tonumber(v)
      if acct[k] == nil then
        error('ledger invariant broken: account field ' .. k .. ' reads `' .. v .. '`')
      end
    end
    if k == 'cn' then numbered = true end
  end
  UNNUMBERED = #raw > 0 and not numbered
end

-- events::keyed_event_id: `<account>/<key>@<created_ms>:<what>`. The creation time keeps ids
-- unique for all time, also when an idempotency key is reused after it was forgotten.
local function keyed_id(key, created, what)
  return ACCOUNT_ID .. '/' .. key .. '@' .. n2s(created) .. ':' .. what
end

-- Outbox: every change appends its event to the shard stream in the same script, so a change
-- and its event are one atomic step. `fields` are the type's own fields (name, value, ...);
-- the sequence is per account and strictly increasing.
local function emit(event_type, id, fields)
  acct.seq = acct.seq + 1
  acct_dirty = true
  local args = { 'id', id, 'type', event_type, 'account', ACCOUNT_ID, 'time', n2s(NOW), 'seq', n2s(acct.seq) }
  for i = 1, #fields do args[#args + 1] = fields[i] end
  write('XADD', K_EVENTS, '*', unpack(args))
end

-- A corrupt account is refused before anything is computed from it.
local function check_allowance()
  if acct.used + acct.held > acct.tot or acct.used < 0 or acct.held < 0 then
    error('ledger invariant broken: allowance used ' .. n2s(acct.used) .. ' + held ' ..
      n2s(acct.held) .. ' against total ' .. n2s(acct.tot))
  end
end
check_allowance()

local function allowance_available()
  if acct.ce == 0 then return 0 end
  return acct.tot - acct.used - acct.held
end

-- ledger::cycle::cycle_containing, on the window the service computed for NOW.
local function cycle_start_in(i)
  local days_in_month = (WINDOW[i + 1] - WINDOW[i]) / DAY_MS
  return WINDOW[i] + (math.min(acct.ad, days_in_month) - 1) * DAY_MS + acct.at
end

local function cycle_containing_now()
  local this_month = cycle_start_in(2)
  if this_month <= NOW then return this_month, cycle_start_in(3) end
  return cycle_start_in(1), this_month
end

-- Lazy rollover: the first touch after a cycle ends starts the cycle containing NOW (however
-- many were missed), applies a scheduled plan and resets the allowance. Holds keep their old
-- cycle: what they held belongs to a closed cycle.
local function rollover()
  if acct.ce == 0 or NOW < acct.ce then return end
  local previous, ended = acct.plan, acct.ce
  if acct.sp ~= '' then
    acct.plan = acct.sp
    acct.sp = ''
  end
  acct.cn = acct.cn + 1
  if acct.plan ~= previous then
    emit('plan.changed', ACCOUNT_ID .. ':' .. n2s(ended) .. ':plan_changed',
      { 'plan', acct.plan, 'prev', previous, 'cycle', n2s(ended) })
  end
  if acct.plan == 'none' then
    acct.cs, acct.ce, acct.tot = 0, 0, 0
  else
    acct.cs, acct.ce = cycle_containing_now()
    acct.tot = plan_of(acct.plan).allowance
    emit('cycle.renewed', ACCOUNT_ID .. ':' .. n2s(acct.cs) .. ':renewed',
      { 'plan', acct.plan, 'cycle', n2s(acct.cs), 'added', n2s(acct.tot) })
  end
  acct.used, acct.held = 0, 0
  acct_dirty = true
end

---------------------------------------------------------------------------------------------
-- Grants: hash field grant id -> "source|granted|remaining|held|expires|created|revoked".

local grants = nil
local grants_dirty = {}

local function tombstone_key(grant_id)
  return PREFIX .. 't:' .. ACCOUNT_ID .. '/' .. grant_id
end

-- Retention: records kept for replays (finished holds, tombstones, plan requests) carry the
-- moment they are forgotten, by the callers' clock; PEXPIRE only frees the memory later. Redis
-- expires keys by its own clock, and the memory store and the tests follow the injected one.
local function forgotten(key, forget_ms)
  if forget_ms and tonumber(forget_ms) <= NOW then
    write('DEL', key)
    return true
  end
  return false
end

-- Tombstones written by this call, by key (their terms), so reads see the queued writes.
local TOMBS = {}

-- A grant's tombstone: its terms ("source|granted|expires|created"), or nil once forgotten.
local function load_tombstone(key)
  if TOMBS[key] then return TOMBS[key] end
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local terms, forget_ms = string.match(raw, '^(.*)|(%d+)$')
  if forgotten(key, forget_ms) then return nil end
  return terms
end

local function load_grants()
  if grants then return grants end
  grants = {}
  local raw = redis.call('HGETALL', K_GRANTS)
  for i = 1, #raw, 2 do
    local src, granted, rem, held, exp, created, revoked =
      string.match(raw[i + 1], '^(%a+)|(%d+)|(%d+)|(%d+)|(%d*)|(%d+)|(%d)$')
    grants[raw[i]] = {
      id = raw[i], src = src, granted = tonumber(granted), rem = tonumber(rem),
      held = tonumber(held), exp = tonumber(exp), created = tonumber(created),
      revoked = revoked == '1',
    }
    local g = grants[raw[i]]
    if not g.rem or not g.held or g.rem + g.held > g.granted then
      error('ledger invariant broken: grant ' .. raw[i] .. ' reads `' .. raw[i + 1] .. '`')
    end
  end
  return grants
end

local function grant_terms(g)
  return g.src .. '|' .. n2s(g.granted) .. '|' .. (g.exp and n2s(g.exp) or '') .. '|' .. n2s(g.created)
end

local function grant_expired(g)
  return g.exp ~= nil and g.exp <= NOW
end

-- Returned units only go back to a grant that can still be spent.
local function grant_spendable(g)
  return not g.revoked and not grant_expired(g)
end

-- ledger::allocation::burn_order
local function burns_before(a, b)
  local ea, eb = a.exp or math.huge, b.exp or math.huge
  if ea ~= eb then return ea < eb end
  if a.src ~= b.src then return a.src == 'promotional' end
  if a.created ~= b.created then return a.created < b.created end
  return bytes_less(a.id, b.id)
end

local function grants_in_burn_order()
  local list = {}
  for _, g in pairs(load_grants()) do list[#list + 1] = g end
  table.sort(list, burns_before)
  return list
end

-- An expired grant's remainder is gone (credits.expired, in grant id order); a grant with
-- nothing left and nothing held is dropped (a tombstone keeps its terms for the retention
-- period, so GrantCredits stays idempotent).
local function sweep_grants()
  local expired = {}
  for id, g in pairs(load_grants()) do
    if grant_expired(g) and g.rem > 0 then expired[#expired + 1] = g end
  end
  table.sort(expired, function(a, b) return bytes_less(a.id, b.id) end)
  for _, g in ipairs(expired) do
    emit('credits.expired', keyed_id(g.id, g.created, 'expired'), {
      'grant', g.id, 'units', n2s(g.rem), 'source', g.src, 'expires', n2s(g.exp),
    })
    g.rem = 0
    grants_dirty[g.id] = true
  end
  for id, g in pairs(grants) do
    if g.held == 0 and g.rem == 0 then
      local key = tombstone_key(id)
      TOMBS[key] = grant_terms(g)
      write('SET', key, grant_terms(g) .. '|' .. n2s(NOW + RETENTION_MS), 'PX', RETENTION_MS)
      grants[id] = nil
      grants_dirty[id] = true
    end
  end
end

---------------------------------------------------------------------------------------------
-- Holds: one hash per hold; open ones are also in the account's zset and the shard's index.

local function hold_key(gen)
  return PREFIX .. 'h:' .. ACCOUNT_ID .. '/' .. gen
end

-- Holds loaded (or created) by this call, by key: later reads see the changes queued for them.
local HOLDS = {}

local function load_hold(key)
  if HOLDS[key] ~= nil then return HOLDS[key] or nil end
  local raw = redis.call('HGETALL', key)
  if #raw == 0 then
    HOLDS[key] = false
    return nil
  end
  local h = { key = key }
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  if forgotten(key, h.forget) then
    HOLDS[key] = false
    return nil
  end
  for _, f in ipairs({ 'qty', 'unit', 'cost', 'fa', 'fc', 'exp', 'created', 'charged', 'returned', 'cycle', 'cn' }) do
    h[f] = tonumber(h[f])
  end
  -- Open holds of accounts stored before cycles were numbered get their number when the
  -- account is first touched (see `number_old_holds`); a finished one needs none.
  if h.cn == nil then h.cn = -1 end
  HOLDS[key] = h
  h.draws = {}
  for gid, units in string.gmatch(h.draw, '([^=,]+)=(%d+)') do
    h.draws[#h.draws + 1] = { id = gid, units = tonumber(units) }
  end
  return h
end

-- Ends a held hold: charges `charge` (allowance first, then draws in burn order) and returns
-- the rest, credits first. Allowance goes back only to the cycle the hold was made in; credits
-- only to grants that can still be spent. ledger::allocation::split_charge is the twin.
local function draws_text(list)
  local out = {}
  for _, d in ipairs(list) do out[#out + 1] = d.id .. '=' .. n2s(d.units) end
  return table.concat(out, ',')
end

local function hold_event(h, event_type, qty, units, fa, fc, draws, reason, lost)
  emit(event_type, keyed_id(h.gen, h.created, string.sub(event_type, 6)), {
    'gen', h.gen, 'kind', h.kind, 'model', h.model, 'qty', n2s(qty), 'units', n2s(units),
    'fa', n2s(fa), 'fc', n2s(fc), 'draws', draws, 'reason', reason or '',
    'cycle', n2s(h.cycle), 'labels', h.labels or '{}', 'lost', n2s(lost or 0),
  })
end

-- Open holds of the account: ZCARD once, then kept current by the queued ZADD/ZREM.
local OPEN = nil
local function open_holds()
  if OPEN == nil then OPEN = redis.call('ZCARD', K_OPEN) end
  return OPEN
end
local function open_changed(delta)
  OPEN = open_holds() + delta
end

-- Ends a held hold, charging `charge` (allowance first, then its draws in burn order) and
-- giving the rest back: allowance only to the hold's own cycle (by number), credits only to
-- grants that can still be spent; what cannot go back is lost and the event says how much.
-- The twin of `Account::finalize`. `fields`: more hold fields to write with the new state, in
-- the same HSET (every redis.call has a fixed cost of a few µs inside Redis).
local function finalize(h, state, charge, reason, fields)
  if charge > h.cost then error('ledger invariant broken: charge above the hold') end
  local fa_charged = math.min(charge, h.fa)
  local rest = charge - fa_charged
  local charged_draws, back, lost = {}, {}, 0
  local allowance_back = 0
  if acct.ce ~= 0 and h.cn == acct.cn then
    acct.held = acct.held - h.fa
    acct.used = acct.used + fa_charged
    allowance_back = h.fa - fa_charged
    acct_dirty = true
  end
  load_grants()
  for _, d in ipairs(h.draws) do
    local take = math.min(rest, d.units)
    rest = rest - take
    if take > 0 then charged_draws[#charged_draws + 1] = { id = d.id, units = take } end
    local g = grants[d.id]
    if g then
      g.held = g.held - d.units
      grants_dirty[d.id] = true
    end
    local left = d.units - take
    if left > 0 then
      if g and grant_spendable(g) then
        g.rem = g.rem + left
        back[#back + 1] = { id = d.id, units = left }
      else
        lost = lost + left
      end
    end
  end
  h.state, h.charged = state, charge
  if charge > 0 then
    acct.ca = acct.ca + fa_charged
    acct.cc = acct.cc + (charge - fa_charged)
    acct_dirty = true
  end
  if state == 'settled' then
    hold_event(h, 'hold.settled', exact_div(charge, h.unit), charge, fa_charged,
      charge - fa_charged, draws_text(charged_draws), '', lost)
  else
    local credits_back = 0
    for _, d in ipairs(back) do credits_back = credits_back + d.units end
    hold_event(h, 'hold.' .. state, h.qty, h.cost, allowance_back, credits_back, draws_text(back),
      reason, lost)
  end
  local changes = { 'state', state, 'charged', n2s(charge), 'forget', n2s(NOW + RETENTION_MS) }
  for _, v in ipairs(fields or {}) do changes[#changes + 1] = v end
  write('HSET', h.key, unpack(changes))
  write('PEXPIRE', h.key, RETENTION_MS)
  write('ZREM', K_OPEN, h.gen)
  write('ZREM', K_EXPIRY, ACCOUNT_ID .. '/' .. h.gen)
  open_changed(-1)
end

-- Lazy reclaim: holds past their expiry are released before anything else looks at funds.
local RECLAIMED = 0
local function reclaim_expired()
  local gens = redis.call('ZRANGEBYSCORE', K_OPEN, '-inf', NOW)
  for _, gen in ipairs(gens) do
    local h = load_hold(hold_key(gen))
    if h and h.state == 'held' then
      finalize(h, 'expired', 0, '')
      RECLAIMED = RECLAIMED + 1
    else
      write('ZREM', K_OPEN, gen)
      open_changed(-1)
    end
  end
end

---------------------------------------------------------------------------------------------
-- Replies (parsed by src/store/redis.rs). No nils inside tables: Redis cuts an array there.

local function hold_reply(h)
  return {
    h.gen, h.kind, h.model, h.qty, h.cost, h.fa, h.fc, draws_text(h.draws), h.state,
    h.exp, h.created, h.charged,
  }
end

local function grant_reply(g)
  return { g.id, g.src, g.granted, g.rem, g.held, g.exp and n2s(g.exp) or '', g.created }
end

local function balance_reply()
  local credits_available, credits_held = 0, 0
  for _, g in pairs(load_grants()) do
    credits_available = credits_available + g.rem
    credits_held = credits_held + g.held
  end
  local has_cycle = acct.ce ~= 0
  return {
    acct.plan, acct.sp, has_cycle and n2s(acct.cs) or '', has_cycle and n2s(acct.ce) or '',
    acct.tot, acct.used, acct.held, allowance_available(), credits_available, credits_held,
    open_holds(),
  }
end

-- Replies that change something; every other reply is a refusal and writes nothing.
local SUCCESS = { ok = true, replayed = true }

-- Hands back `result` and, for a successful one, performs every queued write after checking the
-- invariants (an error raised here leaves Redis as it was). Grants are swept after every
-- operation, as the memory store does, so both drop a grant (and start its tombstone's
-- retention) at the same moment.
local function finish(result)
  if not SUCCESS[result[1]] then return result end
  sweep_grants()
  check_allowance()
  for id in pairs(grants_dirty) do
    local g = grants[id]
    if g and (g.held < 0 or g.rem < 0 or g.rem + g.held > g.granted) then
      error('ledger invariant broken: grant ' .. id .. ': remaining ' .. n2s(g.rem) ..
        ' + held ' .. n2s(g.held) .. ' of ' .. n2s(g.granted))
    end
  end
  -- Every argument is built before the first write, so nothing can fail half way.
  if acct_dirty then
    write('HSET', K_ACCOUNT, 'plan', acct.plan, 'sp', acct.sp, 'ad', n2s(acct.ad),
      'at', n2s(acct.at), 'cs', n2s(acct.cs), 'ce', n2s(acct.ce), 'tot', n2s(acct.tot),
      'used', n2s(acct.used), 'held', n2s(acct.held), 'seq', n2s(acct.seq),
      'ca', n2s(acct.ca), 'cc', n2s(acct.cc), 'cn', n2s(acct.cn))
  end
  for id in pairs(grants_dirty) do
    local g = grants[id]
    if g then
      write('HSET', K_GRANTS, id, g.src .. '|' .. n2s(g.granted) .. '|' .. n2s(g.rem) .. '|' ..
        n2s(g.held) .. '|' .. (g.exp and n2s(g.exp) or '') .. '|' .. n2s(g.created) .. '|' ..
        (g.revoked and '1' or '0'))
    else
      write('HDEL', K_GRANTS, id)
    end
  end
  for _, w in ipairs(WRITES) do redis.call(unpack(w)) end
  return result
end

-- An account stored before cycles were numbered: its open holds pinned their cycle by its
-- start. Before anything can roll the cycle over, each gets the current number when it was
-- made in the current cycle, and a number no cycle has otherwise; written with this call.
local function number_old_holds()
  if not UNNUMBERED then return end
  for _, gen in ipairs(redis.call('ZRANGE', K_OPEN, 0, -1)) do
    local h = load_hold(hold_key(gen))
    if h and h.state == 'held' then
      h.cn = (h.cycle == acct.cs and acct.ce ~= 0) and acct.cn or -1
      write('HSET', h.key, 'cn', n2s(h.cn))
    end
  end
  acct_dirty = true
end

-- Every operation starts here: roll the cycle over, reclaim expired holds, expire grants.
number_old_holds()
rollover()
reclaim_expired()
sweep_grants()
