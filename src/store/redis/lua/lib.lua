-- The Lua twin of the account state machine in src/ledger/account/ (the memory store runs the
-- Rust original; one conformance suite keeps the two identical), as one Redis Functions
-- library. This file is the twin of account/mod.rs (the state, `execute` and the steps
-- operations share); each operation is a file named as its Rust twin account/<operation>.rs.
-- src/store/redis/library.rs puts the library's header (`#!lua name=<library>` and the
-- `LIBRARY` local) in front of this file and appends one file per operation; each operation
-- registers itself as `<library>_<operation>` through `register()` at the end of this file.
-- Loaded once: the definitions below run when the library is loaded, not on every call. A call
-- runs the steps of Account::execute, in its order: load and touch (`load_and_touch()`), the
-- operation, then `finish()` (the grant sweep, the invariants, the writes).
--
-- Calling convention (built by src/store/redis/; every key the function touches is declared;
-- what Rust computes for the arguments, the unit cost, month window, plan table and alert
-- thresholds, is src/ledger/prepare.rs):
--   keys[1] account hash   keys[2] grants hash   keys[3] shard expiry index (zset)
--   keys[4] shard event stream   keys[5] the operation's own key (a finished hold or a plan
--   request; the account hash where there is none), then more keys of the operation
--   args[1] now_ms   args[2] account id   args[3] plan table   args[4..7] month window
--   args[8] retention_ms   args[9..] operation arguments
--
-- Layout, lean on purpose (the common Reserve, Settle and Release touch the account hash, one
-- finished-hold key, the expiry index and the stream, and nothing else), and of a size that
-- does not grow with the account's past:
--   account hash: counters (below), `h:<gen>` one field per open hold (the plan caps them),
--     `l:<gen>` its labels; `x:<gen>` a hold that a call other than the sweeper found expired,
--     kept only until the sweeper moves it to its own key (that call could not declare it);
--   grants hash: grant id -> live grant, or a tombstone of a dropped one; read only when a call
--     draws credits, gives them back, or a grant is due to expire (`gx`);
--   `f:<account>/<gen>`: a settled, released or expired hold, one short string with the
--     retention as its expiry.
--
-- Check, then write: every write is queued with `write()`; reads go through the tables loaded
-- by `load_and_touch()`. `finish()` checks every invariant and only then performs the writes,
-- and only for a successful reply: a refused call, or one that raises an error, writes nothing
-- at all.
--
-- Numbers: Lua numbers are doubles; the Rust side bounds every amount so sums stay below 2^53,
-- and numbers are written with '%d' (tostring would switch to exponent notation). Replies are
-- JSON objects whose numbers are strings, so no precision is lost on the way.

-- Per-call state: set by `load_and_touch()` from the call's keys and arguments.
local KEYS, ARGV, NOW, ACCOUNT_ID, RETENTION_MS
local K_ACCOUNT, K_GRANTS, K_EXPIRY, K_EVENTS, K_OWN
-- Generation id -> the declared key of its finished hold, for the holds this call may finish.
local FINISHED_KEYS
local DAY_MS = 86400000
-- The expiry-index score of a hold expired by a call that could not declare its key, waiting
-- for the sweeper to move it: below every expiry (RedisStore::expire_due reads the two apart).
local MOVE_SCORE = '-1'
-- The layout of the account's state, stored in it as `l`.
local ACCOUNT_LAYOUT = 3

local function n2s(n)
  return string.format('%d', n)
end

local WRITES
-- Queues a Redis write for `finish()`.
local function write(...)
  WRITES[#WRITES + 1] = { ... }
end

local function broken(what)
  error('ledger invariant broken: ' .. what)
end

-- Plan table: "id,price_cents,allowance,max_holds,max_video_seconds,model model;...". Only the
-- plans a call needs are read from it (a plain find, then one anchored match), once per catalog
-- version: the parsed plans stay with the library until another table arrives.
local PLAN_TABLE, PLANS = nil, {}

-- The plan `id` of the table, or nil when the catalog has no such plan.
local function find_plan(id)
  local known = PLANS[id]
  if known ~= nil then return known or nil end
  local plan = false
  -- ';' before the id: a whole entry, not the tail of another id.
  local at = string.find(';' .. PLAN_TABLE, ';' .. id .. ',', 1, true)
  if at then
    local price, allowance, holds, seconds, models =
      string.match(PLAN_TABLE, '^[^,;]+,(%d+),(%d+),(%d+),(%d+),([^;]*);', at)
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

local function draws_text(list)
  local out = {}
  for _, d in ipairs(list) do out[#out + 1] = d.id .. '=' .. n2s(d.units) end
  return table.concat(out, ',')
end

local function parse_draws(text)
  local list = {}
  for gid, units in string.gmatch(text, '([^=,]+)=(%d+)') do
    list[#list + 1] = { id = gid, units = tonumber(units) }
  end
  return list
end

---------------------------------------------------------------------------------------------
-- Account: one hash. Counters: plan, sp (scheduled plan), ad/at (anchor day, time of day),
-- cs/ce (cycle start/end; ce == 0: no cycle), cn (cycle number: every rollover and plan start
-- increments it; holds pin their cycle by it), tot/used/held (allowance), seq (last event),
-- ca/cc (lifetime charged from allowance/credits), cr/ch (credits spendable/held, over all
-- grants), gx (earliest expiry of a grant with units left, 0: none), ng (live grants), tp (the
-- highest usage alert threshold, in percent, announced in this cycle).

-- The account of this call (the counters above, its open holds in `acct.h` and the expired
-- holds waiting for the sweeper in `acct.x`), stored as one MessagePack value in the account
-- hash's field `s`: one field read and one written per call, decoded and encoded in C.
-- `ACCT_FIELDS`: more fields for the one HSET of `finish()` (an open hold's labels).
local acct, acct_dirty, LOADED_STATE, ACCT_FIELDS
local function set_account_field(k, v)
  ACCT_FIELDS[#ACCT_FIELDS + 1] = k
  ACCT_FIELDS[#ACCT_FIELDS + 1] = v
  acct_dirty = true
end
-- Open holds (generation id -> record, see `open_hold`), expired ones waiting for the sweeper
-- (generation id -> packed finished hold), and the labels of open holds read so far (each in
-- the account field `l:<gen>`, read only when the hold's event needs them).
local OPEN_RAW, EXPIRED_RAW, LABELS_RAW, OPEN_COUNT

-- Loads the account: a handful of counters and the open holds, whatever the account did
-- before; with the labels of generation `own` (the call's own hold), in the same read.
local function load_account(own)
  acct_dirty, ACCT_FIELDS, LABELS_RAW = false, {}, {}
  local stored = redis.call('HMGET', K_ACCOUNT, 's', 'v', 'l:' .. (own or ''))
  LOADED_STATE = stored[1]
  if own and stored[3] then LABELS_RAW[own] = stored[3] end
  -- Earlier versions stored accounts in other layouts (one field per counter and per hold,
  -- `v` naming the layout): such an account is refused rather than misread. (Only an account
  -- without a state can be one, so the common call pays nothing for the check.)
  if stored[2] or (not LOADED_STATE and redis.call('EXISTS', K_ACCOUNT) == 1) then
    error('account ' .. ACCOUNT_ID .. ' is not in this version\'s layout (v=' .. (stored[2] or 'none') .. ')')
  end
  if LOADED_STATE then
    acct = cmsgpack.unpack(LOADED_STATE)
    -- A counter of another type raises at its first use (Lua compares and adds numbers with
    -- numbers only), so a corrupt state is refused, never misread.
    if type(acct) ~= 'table' or acct.l ~= ACCOUNT_LAYOUT then
      broken('account state of ' .. ACCOUNT_ID .. ' is not of layout ' .. ACCOUNT_LAYOUT)
    end
  else
    acct = {
      l = ACCOUNT_LAYOUT, plan = 'none', pp = 0, pa = 0, sp = '', spp = 0, spa = 0, ad = 0, at = 0,
      cs = 0, ce = 0, cn = 0, tot = 0,
      used = 0, held = 0, seq = 0, ca = 0, cc = 0, cr = 0, ch = 0, gx = 0, ng = 0, tp = 0,
      h = {}, x = {},
    }
  end
  if acct.pp == nil then
    -- A state written before plan terms were recorded: the catalog's terms of its plans.
    local p, q = plan_of(acct.plan), plan_of(acct.sp ~= '' and acct.sp or 'none')
    acct.pp, acct.pa, acct.spp, acct.spa = p.price, p.allowance, q.price, q.allowance
  end
  OPEN_RAW, EXPIRED_RAW = acct.h, acct.x
  OPEN_COUNT = 0
  for _ in pairs(OPEN_RAW) do OPEN_COUNT = OPEN_COUNT + 1 end
end

local function check_allowance()
  if acct.used + acct.held > acct.tot or acct.used < 0 or acct.held < 0 or acct.ca < 0
    or acct.cc < 0 then
    broken('allowance used ' .. n2s(acct.used) .. ' + held ' .. n2s(acct.held) ..
      ' against total ' .. n2s(acct.tot))
  end
end

local function allowance_available()
  if acct.ce == 0 then return 0 end
  return acct.tot - acct.used - acct.held
end

-- events::keyed_event_id: `<account>/<key>@<created_ms>:<what>`.
local function keyed_id(key, created, what)
  return ACCOUNT_ID .. '/' .. key .. '@' .. n2s(created) .. ':' .. what
end

-- events::hold_event_id and events::grant_event_id: the key says what the event is about.
local function hold_event_id(gen, created, what)
  return keyed_id('hold/' .. gen, created, what)
end
local function grant_event_id(id, created, what)
  return keyed_id('grant/' .. id, created, what)
end

-- Outbox: one stream entry per event, appended in the same script as the change, with only the
-- fields the event has (empty ones, zero numbers and empty labels are left out: readers
-- default them). Plain stream
-- fields rather than one packed value: Redis shares field names between entries of a stream
-- node, which makes an event about a third smaller than the same event as JSON. The sequence
-- is per account.
local NUMERIC_EVENT_FIELD = {
  qty = true, units = true, fa = true, fc = true, cycle = true, added = true, charge = true,
  lost = true, pct = true, expires = true, effective = true,
}
local function emit(event_type, id, fields)
  acct.seq = acct.seq + 1
  acct_dirty = true
  local args = { 'XADD', K_EVENTS, '*', 'id', id, 'type', event_type, 'account', ACCOUNT_ID,
    'time', n2s(NOW), 'seq', n2s(acct.seq) }
  for i = 1, #fields, 2 do
    local k, v = fields[i], fields[i + 1]
    -- Zeros only for numbers and `{}` only for labels: an id or a reason may be "0".
    if v ~= '' and not (v == '0' and NUMERIC_EVENT_FIELD[k]) and not (k == 'labels' and v == '{}') then
      args[#args + 1] = k
      args[#args + 1] = v
    end
  end
  WRITES[#WRITES + 1] = args
end

-- ledger::cycle::cycle_containing, on the window the service computed for NOW.
local function cycle_start_in(i)
  -- The month window is args[4..7]: read only by a call that starts or rolls a cycle.
  local month, next_month = tonumber(ARGV[3 + i]), tonumber(ARGV[4 + i])
  local days_in_month = (next_month - month) / DAY_MS
  return month + (math.min(acct.ad, days_in_month) - 1) * DAY_MS + acct.at
end

local function cycle_containing_now()
  local this_month = cycle_start_in(2)
  if this_month <= NOW then return this_month, cycle_start_in(3) end
  return cycle_start_in(1), this_month
end

-- PlanTerms::renewed: a cycle starts with the catalog's terms of the account's plan while the
-- catalog has it, else with the terms recorded on the account (`pp` price, `pa` allowance).
local function renew_terms()
  local p = find_plan(acct.plan)
  if p then acct.pp, acct.pa = p.price, p.allowance end
end

-- Account::rollover
local function rollover()
  if acct.ce == 0 or NOW < acct.ce then return end
  local previous, ended = acct.plan, acct.ce
  if acct.sp ~= '' then
    acct.plan, acct.pp, acct.pa = acct.sp, acct.spp, acct.spa
    acct.sp, acct.spp, acct.spa = '', 0, 0
  end
  if acct.plan ~= previous then
    emit('plan.changed', ACCOUNT_ID .. ':' .. n2s(ended) .. ':plan_changed',
      { 'plan', acct.plan, 'prev', previous, 'cycle', n2s(ended) })
  end
  acct.cn = acct.cn + 1
  acct.tp = 0
  if acct.plan == 'none' then
    acct.cs, acct.ce, acct.tot = 0, 0, 0
    acct.pp, acct.pa = 0, 0
  else
    acct.cs, acct.ce = cycle_containing_now()
    renew_terms()
    acct.tot = acct.pa
    emit('cycle.renewed', ACCOUNT_ID .. ':' .. n2s(acct.cs) .. ':renewed',
      { 'plan', acct.plan, 'cycle', n2s(acct.cs), 'added', n2s(acct.tot) })
  end
  acct.used, acct.held = 0, 0
  acct_dirty = true
end

---------------------------------------------------------------------------------------------
-- Grants: hash field grant id -> "L|source|granted|remaining|held|expires|created|revoked" for
-- a live grant (`revoked`: 0, or 1:<units the revocation took>; a bare 1, as earlier versions
-- wrote, took units no longer known), "T|source|granted|expires|created|[r<units>|]forget_ms"
-- for a dropped one (its terms are remembered for the retention period, so GrantCredits stays
-- idempotent; `r<units>`: what its revocation took, so RevokeCredits does too).

local grants        -- live grants by id, once loaded (nil: not loaded by this call)
local tombs         -- dropped grants by id: { terms, forget }
local grants_dirty  -- ids of the grants this call changed

local function load_grants()
  if grants then return grants end
  grants, tombs = {}, {}
  local raw = redis.call('HGETALL', K_GRANTS)
  for i = 1, #raw, 2 do
    local id, v = raw[i], raw[i + 1]
    if string.sub(v, 1, 2) == 'T|' then
      local terms, rv, forget = string.match(v, '^T|([^|]*|[^|]*|[^|]*|[^|]*)|r(%d+)|(%d+)$')
      if not forget then terms, forget = string.match(v, '^T|(.*)|(%d+)$') end
      if not forget then broken('grant ' .. id .. ' reads `' .. v .. '`') end
      if tonumber(forget) <= NOW then
        write('HDEL', K_GRANTS, id)
      else
        tombs[id] = { terms = terms, rv = tonumber(rv), forget = tonumber(forget) }
      end
    else
      local src, granted, rem, held, exp, created, revoked, rv =
        string.match(v, '^L|(%a+)|(%d+)|(%d+)|(%d+)|(%d*)|(%d+)|([01]):?(%d*)$')
      if not src then broken('grant ' .. id .. ' reads `' .. v .. '`') end
      local g = {
        id = id, src = src, granted = tonumber(granted), rem = tonumber(rem),
        held = tonumber(held), exp = tonumber(exp), created = tonumber(created),
        revoked = revoked == '1', rv = tonumber(rv) or 0,
      }
      if g.rem + g.held > g.granted then broken('grant ' .. id .. ' reads `' .. v .. '`') end
      grants[id] = g
    end
  end
  return grants
end

-- Adds a new live grant (GrantCredits, or a refund's credits; Account::add_grant), unless the
-- account holds `max_live` already: then nil.
local function add_grant(id, source, units, exp, max_live)
  local live = 0
  for _ in pairs(grants) do live = live + 1 end
  if live >= max_live then return nil end
  local g = {
    id = id, src = source, granted = units, rem = units, held = 0, exp = exp, created = NOW,
    revoked = false, rv = 0,
  }
  grants[id] = g
  grants_dirty[id] = true
  acct.cr = acct.cr + units
  acct.ng = acct.ng + 1
  acct_dirty = true
  return g
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
local function burn_order(a, b)
  local ea, eb = a.exp or math.huge, b.exp or math.huge
  if ea ~= eb then return ea < eb end
  if a.src ~= b.src then return a.src == 'promotional' end
  if a.created ~= b.created then return a.created < b.created end
  return bytes_less(a.id, b.id)
end

local function grants_in_burn_order()
  local list = {}
  for _, g in pairs(load_grants()) do list[#list + 1] = g end
  table.sort(list, burn_order)
  return list
end

-- Account::sweep_grants, on the loaded grants: an expired grant's remainder is gone
-- (credits.expired, in grant id order); a grant with nothing left and nothing held is dropped.
-- Grants are loaded whenever a call changes one, or one is due to expire (gx), so the grants
-- that are not loaded have nothing to sweep.
local function sweep_grants()
  if not grants then
    if acct.gx == 0 or acct.gx > NOW then return end
    load_grants()
  end
  local expired = {}
  for _, g in pairs(grants) do
    if grant_expired(g) and g.rem > 0 then expired[#expired + 1] = g end
  end
  table.sort(expired, function(a, b) return bytes_less(a.id, b.id) end)
  if #expired > 0 then acct_dirty = true end
  for _, g in ipairs(expired) do
    emit('credits.expired', grant_event_id(g.id, g.created, 'expired'), {
      'grant', g.id, 'units', n2s(g.rem), 'source', g.src, 'expires', n2s(g.exp),
    })
    acct.cr = acct.cr - g.rem
    g.rem = 0
    grants_dirty[g.id] = true
  end
  for id, g in pairs(grants) do
    if g.held == 0 and g.rem == 0 then
      tombs[id] = { terms = grant_terms(g), rv = g.revoked and g.rv or nil, forget = NOW + RETENTION_MS }
      grants[id] = nil
      grants_dirty[id] = true
      acct.ng = acct.ng - 1
      acct_dirty = true
    end
  end
end

---------------------------------------------------------------------------------------------
-- Holds. Open: account field `h:<gen>` =
--   "exp|kind|model|qty|unit|fa|draws|created|cycle_start|cn" (times in base 36, the kind as
--   one letter), its labels (JSON) in `l:<gen>` when there are any.
-- Finished: "state|kind|model|qty|unit|fa|draws|exp|created|charged|cycle_start|cn|refunded|
-- cfa|[lost|]forget" (`cfa`: the part of the charge from the allowance; `lost`: credits that
-- could not go back, only when there were any, so a record without reads as before),
-- in `f:<account>/<gen>` when settled or released (the call's own key), in the account field
-- `x:<gen>` when expired (reclaiming may expire holds of any generation, whose keys the call
-- cannot declare).

local HOLDS        -- parsed holds by generation id (open or finished), with their changes

-- Times in base 36 and kinds as one letter keep a hold's text short: an open hold under 64
-- bytes stays in the account hash's compact encoding (Redis turns a hash into a table, about
-- four times larger, for good once one value is longer: `hash-max-listpack-value`).
local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
local function b36(n)
  if n == 0 then return '0' end
  local out = {}
  while n > 0 do
    local d = n % 36
    out[#out + 1] = string.sub(DIGITS, d + 1, d + 1)
    n = (n - d) / 36
  end
  return string.reverse(table.concat(out))
end
local function from36(text)
  return tonumber(text, 36)
end
local KIND_CODE = { character_image = 'c', location_image = 'l', first_frame = 'f', video = 'v' }
local CODE_KIND = { c = 'character_image', l = 'location_image', f = 'first_frame', v = 'video' }

-- An open hold is stored as a record: e expiry, k kind (one letter), m model, q quantity,
-- u unit cost, a units from the allowance, d draws ({id, units} in burn order), c created,
-- y cycle start, n cycle number, l true when it has labels.
local function open_hold(gen)
  if HOLDS[gen] then return HOLDS[gen] end
  local r = OPEN_RAW[gen]
  if not r then return nil end
  if type(r) ~= 'table' or not CODE_KIND[r.k] or type(r.q) ~= 'number' or type(r.u) ~= 'number'
    or type(r.a) ~= 'number' or type(r.d) ~= 'table' then
    broken('open hold ' .. gen .. ' is not a hold record')
  end
  local h = {
    gen = gen, state = 'held', kind = CODE_KIND[r.k], model = r.m, qty = r.q, unit = r.u,
    fa = r.a, draws = r.d, exp = r.e, created = r.c, cycle = r.y, cn = r.n, has_labels = r.l,
    charged = 0,
  }
  h.cost = h.unit * h.qty
  h.fc = h.cost - h.fa
  HOLDS[gen] = h
  return h
end

-- The labels of hold `h` (JSON), read from the account hash the first time they are needed.
local function hold_labels(h)
  if h.labels then return h.labels end
  h.labels = '{}'
  if h.has_labels then
    h.labels = LABELS_RAW[h.gen] or redis.call('HGET', K_ACCOUNT, 'l:' .. h.gen) or '{}'
  end
  return h.labels
end

local function pack_open(h)
  return {
    e = h.exp, k = KIND_CODE[h.kind], m = h.model, q = h.qty, u = h.unit, a = h.fa, d = h.draws,
    c = h.created, y = h.cycle, n = h.cn, l = h.has_labels or nil,
  }
end

local STATE_CODE = { settled = 's', released = 'r', expired = 'x' }
local CODE_STATE = { s = 'settled', r = 'released', x = 'expired' }

local function pack_finished(h)
  return STATE_CODE[h.state] .. '|' .. KIND_CODE[h.kind] .. '|' .. h.model .. '|' .. n2s(h.qty) ..
    '|' .. n2s(h.unit) .. '|' .. n2s(h.fa) .. '|' .. draws_text(h.draws) .. '|' .. b36(h.exp) ..
    '|' .. b36(h.created) .. '|' .. n2s(h.charged) .. '|' .. b36(h.cycle) .. '|' .. n2s(h.cn) ..
    '|' .. n2s(h.refunded or 0) .. '|' .. n2s(h.cfa or 0) ..
    ((h.lost or 0) > 0 and '|' .. n2s(h.lost) or '') .. '|' .. b36(h.forget)
end

local FINISHED_FIELDS =
  '^(%a)|(%a)|([^|]*)|(%d+)|(%d+)|(%d+)|([^|]*)|(%w+)|(%w+)|(%d+)|(%w+)|(%d+)|(%d+)|(%d+)|'
local function parse_finished(gen, v)
  local state, kind, model, qty, unit, fa, draws, exp, created, charged, cycle, cn, refunded, cfa,
    lost, forget = string.match(v, FINISHED_FIELDS .. '(%d+)|(%w+)$')
  if not state then
    state, kind, model, qty, unit, fa, draws, exp, created, charged, cycle, cn, refunded, cfa,
      forget = string.match(v, FINISHED_FIELDS .. '(%w+)$')
    lost = '0'
  end
  if not state or not CODE_KIND[kind] or not CODE_STATE[state] then
    broken('finished hold ' .. gen .. ' reads `' .. v .. '`')
  end
  local h = {
    gen = gen, state = CODE_STATE[state], kind = CODE_KIND[kind], model = model,
    qty = tonumber(qty), unit = tonumber(unit), fa = tonumber(fa), draws = parse_draws(draws),
    exp = from36(exp), created = from36(created), charged = tonumber(charged),
    cycle = from36(cycle), cn = tonumber(cn), refunded = tonumber(refunded), cfa = tonumber(cfa),
    lost = tonumber(lost),
    forget = from36(forget), labels = '{}',
  }
  h.cost = h.unit * h.qty
  h.fc = h.cost - h.fa
  return h
end

-- The hold of `gen`, open or finished, or nil (never reserved, or forgotten). `own_key`: the
-- call's own key, where a settled or released hold of `gen` is kept.
local function find_hold(gen, own_key)
  local h = open_hold(gen)
  if h then return h end
  local v = EXPIRED_RAW[gen]
  if v then
    h = parse_finished(gen, v)
    if h.forget > NOW then
      HOLDS[gen] = h
      return h
    end
  end
  v = redis.call('GET', own_key)
  if not v then return nil end
  h = parse_finished(gen, v)
  if h.forget <= NOW then return nil end
  HOLDS[gen] = h
  return h
end

local function hold_event(h, event_type, qty, units, fa, draws, reason, lost)
  local fc = 0
  for _, d in ipairs(draws) do fc = fc + d.units end
  emit(event_type, hold_event_id(h.gen, h.created, string.sub(event_type, 6)), {
    'gen', h.gen, 'kind', h.kind, 'model', h.model, 'qty', n2s(qty), 'units', n2s(units),
    'fa', n2s(fa), 'fc', n2s(fc), 'draws', draws_text(draws), 'reason', reason or '',
    'cycle', n2s(h.cycle), 'labels', hold_labels(h), 'lost', n2s(lost or 0),
  })
end

-- Account::finalize: ends a held hold, charging `charge` (allowance first, then its draws in
-- burn order) and giving the rest back: allowance only to the hold's own cycle (by number),
-- credits only to grants that can still be spent; what cannot go back is lost, and the event
-- says how much. `own_key`: where a settled or released hold is kept.
local function finalize(h, state, charge, reason, own_key)
  if charge > h.cost then broken('charge ' .. n2s(charge) .. ' above hold ' .. n2s(h.cost)) end
  local same_cycle = acct.ce ~= 0 and h.cn == acct.cn
  -- ledger::allocation::split_charge: what the hold drew from the allowance, then allowance
  -- free now (beside this hold) in its own cycle, then credits in burn order from its draws.
  local allowance_free = 0
  if same_cycle then allowance_free = allowance_available() end
  local from_held_allowance = math.min(charge, h.fa)
  local rest = charge - from_held_allowance
  local from_free_allowance = math.min(rest, allowance_free)
  rest = rest - from_free_allowance
  if #h.draws > 0 then load_grants() end
  local taken, returnable = {}, {}
  for i, d in ipairs(h.draws) do
    local g = grants[d.id]
    returnable[i] = g ~= nil and grant_spendable(g)
    taken[i] = math.min(rest, d.units)
    rest = rest - taken[i]
  end
  if rest > 0 then broken('charge ' .. n2s(charge) .. ' exceeds what hold ' .. h.gen .. ' drew') end
  local fa_charged = from_held_allowance + from_free_allowance
  local charged_draws, back, lost = {}, {}, 0
  local allowance_back = 0
  if same_cycle then
    acct.held = acct.held - h.fa
    acct.used = acct.used + fa_charged
    allowance_back = h.fa - from_held_allowance
  end
  for i, d in ipairs(h.draws) do
    local take = taken[i]
    if take > 0 then charged_draws[#charged_draws + 1] = { id = d.id, units = take } end
    acct.ch = acct.ch - d.units
    local g = grants[d.id]
    if g then
      g.held = g.held - d.units
      grants_dirty[d.id] = true
    end
    local left = d.units - take
    if left > 0 then
      if returnable[i] then
        g.rem = g.rem + left
        acct.cr = acct.cr + left
        back[#back + 1] = { id = d.id, units = left }
      else
        lost = lost + left
      end
    end
  end
  h.state, h.charged, h.cfa, h.forget = state, charge, fa_charged, NOW + RETENTION_MS
  h.lost = lost
  acct.ca = acct.ca + fa_charged
  acct.cc = acct.cc + (charge - fa_charged)
  acct_dirty = true
  if state == 'settled' then
    hold_event(h, 'hold.settled', exact_div(charge, h.unit), charge, fa_charged, charged_draws,
      '', lost)
  else
    hold_event(h, 'hold.' .. state, h.qty, h.cost, allowance_back, back, reason, lost)
  end
  OPEN_RAW[h.gen] = nil
  OPEN_COUNT = OPEN_COUNT - 1
  if h.has_labels then write('HDEL', K_ACCOUNT, 'l:' .. h.gen) end
  if own_key then
    write('SET', own_key, pack_finished(h), 'PX', RETENTION_MS)
    write('ZREM', K_EXPIRY, ACCOUNT_ID .. '/' .. h.gen)
  else
    -- An expiry whose key this call could not declare: kept in the account's state, and in
    -- the expiry index scored MOVE_SCORE, until the sweeper moves it to its own key
    -- (`move_expired`). Below every expiry, so the entries the sweeper counts (those due) are
    -- the memory store's: a hold already expired is no account's due work.
    EXPIRED_RAW[h.gen] = pack_finished(h)
    write('ZADD', K_EXPIRY, MOVE_SCORE, ACCOUNT_ID .. '/' .. h.gen)
  end
end

-- What of finished hold `h` went back (HoldRecord::returned_units): the allowance it drew and
-- the charge did not take, and its credits the charge did not take, less those lost.
local function returned_units(h)
  return h.fa - math.min(h.charged, h.fa) + h.fc - (h.charged - h.cfa) - h.lost
end

-- Account::reclaim_expired: reclaims open holds past their expiry, earliest first (ties by
-- generation id), and forgets expired holds past retention.
local RECLAIMED    -- holds this call expired
local function reclaim_expired()
  local due = {}
  for gen, r in pairs(OPEN_RAW) do
    if r.e <= NOW then due[#due + 1] = { exp = r.e, gen = gen } end
  end
  table.sort(due, function(a, b)
    if a.exp ~= b.exp then return a.exp < b.exp end
    return bytes_less(a.gen, b.gen)
  end)
  for _, d in ipairs(due) do
    finalize(open_hold(d.gen), 'expired', 0, '', FINISHED_KEYS[d.gen])
    RECLAIMED = RECLAIMED + 1
  end
  for gen, v in pairs(EXPIRED_RAW) do
    if from36(string.match(v, '|(%w+)$')) <= NOW then
      EXPIRED_RAW[gen] = nil
      acct_dirty = true
    end
  end
end

-- Moves expired hold `gen` waiting in the account's state `state` to its own key `key` (the
-- sweeper's work, with the key declared), or forgets it past retention. `perform` queues the
-- writes (`write`) or runs them at once (`redis.call`).
local function move_expired(state, gen, key, perform)
  local v = state.x[gen]
  local forget = from36(string.match(v, '|(%w+)$'))
  if forget > NOW then perform('SET', key, v, 'PX', n2s(forget - NOW)) end
  state.x[gen] = nil
  perform('ZREM', K_EXPIRY, ACCOUNT_ID .. '/' .. gen)
end

-- Account::announce_thresholds: `usage.threshold` for every alert threshold (percent of the
-- cycle's allowance; `list` is "80,100", increasing) that settled use has reached and this
-- cycle has not announced.
local function announce_thresholds(list)
  if acct.ce == 0 or acct.tot == 0 then return end
  for text in string.gmatch(list, '%d+') do
    local percent = tonumber(text)
    if percent > acct.tp and acct.used * 100 >= percent * acct.tot then
      acct.tp = percent
      acct_dirty = true
      emit('usage.threshold', ACCOUNT_ID .. '/cycle-' .. n2s(acct.cn) .. '@' .. n2s(acct.cs) ..
        ':threshold:' .. n2s(percent), {
        'plan', acct.plan, 'cycle', n2s(acct.cs), 'units', n2s(acct.used), 'pct', n2s(percent),
      })
    end
  end
end

---------------------------------------------------------------------------------------------
-- Replies (parsed by src/store/redis/reply.rs with serde): JSON objects, numbers as strings.

local function hold_reply(h)
  return {
    gen = h.gen, kind = h.kind, model = h.model, qty = n2s(h.qty), cost = n2s(h.cost),
    fa = n2s(h.fa), fc = n2s(h.fc), draws = draws_text(h.draws), state = h.state,
    exp = n2s(h.exp), created = n2s(h.created), charged = n2s(h.charged),
  }
end

local function grant_reply(g)
  return {
    id = g.id, source = g.src, granted = n2s(g.granted), remaining = n2s(g.rem),
    held = n2s(g.held), expires = g.exp and n2s(g.exp) or '', created = n2s(g.created),
  }
end

local function balance_reply()
  local has_cycle = acct.ce ~= 0
  return {
    plan = acct.plan, scheduled = acct.sp, cycle_start = has_cycle and n2s(acct.cs) or '',
    cycle_end = has_cycle and n2s(acct.ce) or '', total = n2s(acct.tot), used = n2s(acct.used),
    held = n2s(acct.held), available = n2s(allowance_available()), credits = n2s(acct.cr),
    credits_held = n2s(acct.ch), open = n2s(OPEN_COUNT),
  }
end

-- A reply of `status` with more fields.
local function reply(status, fields)
  local r = fields or {}
  r.status = status
  return r
end

-- Replies that change something; every other reply is a refusal and writes nothing.
local SUCCESS = { ok = true, replayed = true }

-- Catalog::check_features: the plan's refusal of a generation, or nil (features come from the
-- plan alone; the Rust side rebuilds the exact denial from the plan and the open holds).
local function check_features(kind, model, qty)
  local plan = plan_of(acct.plan)
  if not plan_allows_model(plan, model) or (kind == 'video' and qty > plan.max_seconds)
    or OPEN_COUNT >= plan.max_holds then
    return reply('denied', { plan = acct.plan, open = n2s(OPEN_COUNT) })
  end
  return nil
end

-- Account::reserve_new, for a generation that is not known yet: checks features and funds and
-- holds the cost. Returns the new hold, or nil and the refusal.
local function reserve_new(gen, kind, model, qty, unit, ttl_ms, labels)
  -- No unit cost: the catalog has no such model (checked after replays, as in Rust).
  if not unit then return nil, reply('unknown_model') end
  local cost = unit * qty
  local refusal = check_features(kind, model, qty)
  if refusal then return nil, refusal end
  -- ledger::allocation::allocate: allowance first, then spendable grants in burn order. The
  -- account counts its spendable credits, so grants are read only when they are drawn from.
  local available = allowance_available()
  local from_allowance = math.min(cost, available)
  local rest = cost - from_allowance
  if rest > acct.cr then
    return nil, reply('insufficient', { needed = n2s(cost), available = n2s(available + acct.cr) })
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
    created = NOW, charged = 0, cycle = acct.cs, cn = acct.cn, labels = labels,
  }
  h.has_labels = labels ~= '{}'
  HOLDS[gen] = h
  OPEN_RAW[gen] = pack_open(h)
  OPEN_COUNT = OPEN_COUNT + 1
  acct_dirty = true
  if h.has_labels then
    LABELS_RAW[gen] = labels
    set_account_field('l:' .. gen, labels)
  end
  hold_event(h, 'hold.reserved', qty, cost, h.fa, draws, '', 0)
  write('ZADD', K_EXPIRY, n2s(h.exp), ACCOUNT_ID .. '/' .. gen)
  return h, nil
end

-- Account::check_invariants: checks every invariant on what the call computed; raises on the
-- first broken one.
local function check_invariants()
  check_allowance()
  local held_here, credits_held, open = 0, 0, 0
  for gen in pairs(OPEN_RAW) do
    local h = open_hold(gen)
    open = open + 1
    if acct.ce ~= 0 and h.cn == acct.cn then held_here = held_here + h.fa end
    credits_held = credits_held + h.fc
  end
  if held_here ~= acct.held then
    broken('allowance held ' .. n2s(acct.held) .. ' but open holds of the cycle hold ' .. n2s(held_here))
  end
  if credits_held ~= acct.ch or open ~= OPEN_COUNT then
    broken('credits held ' .. n2s(acct.ch) .. ' but open holds drew ' .. n2s(credits_held))
  end
  if acct.cr < 0 then broken('credits available ' .. n2s(acct.cr)) end
  if grants then
    local rem, held, live, gx = 0, 0, 0, 0
    for id, g in pairs(grants) do
      if g.rem < 0 or g.held < 0 or g.rem + g.held > g.granted then
        broken('grant ' .. id .. ': remaining ' .. n2s(g.rem) .. ' + held ' .. n2s(g.held) ..
          ' of ' .. n2s(g.granted))
      end
      rem, held, live = rem + g.rem, held + g.held, live + 1
      if g.rem > 0 and g.exp and (gx == 0 or g.exp < gx) then gx = g.exp end
    end
    if rem ~= acct.cr or held ~= acct.ch or live ~= acct.ng then
      broken('grants hold ' .. n2s(rem) .. ' + ' .. n2s(held) .. ' in ' .. n2s(live) ..
        ' grants; the account counts ' .. n2s(acct.cr) .. ' + ' .. n2s(acct.ch) .. ' in ' .. n2s(acct.ng))
    end
    acct.gx = gx
  end
end

-- Account::execute's finish: hands back `result` as JSON and, for a successful one, sweeps the
-- grants and performs every queued write after checking the invariants (an error raised here
-- leaves Redis as it was).
local function finish(result)
  if SUCCESS[result.status] then
    sweep_grants()
    check_invariants()
    -- Every argument is built before the first write, so nothing can fail half way.
    if acct_dirty then
      local args = { 'HSET', K_ACCOUNT, 's', cmsgpack.pack(acct) }
      for _, v in ipairs(ACCT_FIELDS) do args[#args + 1] = v end
      WRITES[#WRITES + 1] = args
    end
    for id in pairs(grants_dirty) do
      local g = grants[id]
      if g then
        write('HSET', K_GRANTS, id, 'L|' .. g.src .. '|' .. n2s(g.granted) .. '|' .. n2s(g.rem) ..
          '|' .. n2s(g.held) .. '|' .. (g.exp and n2s(g.exp) or '') .. '|' .. n2s(g.created) ..
          '|' .. (g.revoked and '1:' .. n2s(g.rv) or '0'))
      elseif tombs[id] then
        local t = tombs[id]
        write('HSET', K_GRANTS, id,
          'T|' .. t.terms .. '|' .. (t.rv and 'r' .. n2s(t.rv) .. '|' or '') .. n2s(t.forget))
      end
    end
    for _, w in ipairs(WRITES) do redis.call(unpack(w)) end
  end
  return cjson.encode(result)
end

-- Every operation starts here (Account::execute's load, then Account::touch): the call's state
-- from its keys and arguments (`finished_keys`: generation id -> the declared key of its
-- finished hold; `own`: the call's own generation), the account, then the lazy work: roll the
-- cycle over, reclaim expired holds, expire grants.
local function load_and_touch(keys, args, finished_keys, own)
  KEYS, ARGV = keys, args
  NOW, ACCOUNT_ID = tonumber(args[1]), args[2]
  if args[3] ~= PLAN_TABLE then PLAN_TABLE, PLANS = args[3], {} end
  RETENTION_MS = tonumber(args[8])
  K_ACCOUNT, K_GRANTS, K_EXPIRY, K_EVENTS, K_OWN = keys[1], keys[2], keys[3], keys[4], keys[5]
  FINISHED_KEYS = finished_keys or {}
  WRITES, HOLDS, RECLAIMED = {}, {}, 0
  grants, tombs, grants_dirty = nil, nil, {}
  load_account(own)
  -- A corrupt account is refused before anything is computed from it.
  check_allowance()
  rollover()
  reclaim_expired()
  sweep_grants()
end

-- The finished-hold key of the call's own generation (`args[9]`, `keys[5]`).
local function own_generation(keys, args)
  return { [args[9]] = keys[5] }
end

-- Registers operation `op` as the function `<library>_<name>`, run as Account::execute runs
-- one: `load_and_touch()`, the operation, `finish()`. `finished_keys(keys, args)` names the
-- finished-hold keys the call declares; `flags` are the function's Redis flags (`no-writes`
-- for an operation that never writes).
local function register(name, op, finished_keys, flags)
  redis.register_function({
    function_name = LIBRARY .. '_' .. name,
    callback = function(keys, args)
      -- An operation on its own generation may need that hold's labels for its event.
      local own = finished_keys == own_generation and args[9] or nil
      load_and_touch(keys, args, finished_keys and finished_keys(keys, args), own)
      return finish(op())
    end,
    flags = flags,
  })
end
