-- ReserveBatch (Account::reserve_batch): every item held, in order, or none. KEYS[5..4+n] the
-- items' finished-hold keys. ARGV[9] ttl_ms, [10] n, then per item: generation id, kind,
-- model, quantity, unit cost, labels (JSON).
-- Replies: ok|replayed {holds, balance} | conflict {gen, kind, model, qty, index: an item not
-- reserved, when there is one}
--        | item {index, gen, refusal: {status: unknown_model|denied|insufficient, ...}}
local function reserve_batch()
  local ttl_ms, n = tonumber(ARGV[9]), tonumber(ARGV[10])
  local items, known, any_known = {}, {}, false
  for i = 1, n do
    local a = 10 + (i - 1) * 6
    items[i] = {
      gen = ARGV[a + 1], kind = ARGV[a + 2], model = ARGV[a + 3], qty = tonumber(ARGV[a + 4]),
      unit = tonumber(ARGV[a + 5]), labels = ARGV[a + 6],
    }
    known[i] = find_hold(items[i].gen, KEYS[4 + i])
    if known[i] then any_known = true end
  end
  local function same(i)
    local h, item = known[i], items[i]
    return h and h.kind == item.kind and h.model == item.model and h.qty == item.qty
  end
  if any_known then
    local all_same = true
    for i = 1, n do
      if not same(i) then all_same = false end
    end
    if all_same then
      local holds = {}
      for i = 1, n do holds[i] = hold_reply(known[i]) end
      return reply('replayed', { holds = holds, balance = balance_reply() })
    end
    -- Not this batch again: name an id used for another generation, else any known one.
    local name = nil
    for i = 1, n do
      if not name and known[i] and not same(i) then name = i end
    end
    for i = 1, n do
      if not name and known[i] then name = i end
    end
    local h = known[name]
    local fresh = nil
    for i = 1, n do
      if not fresh and not known[i] then fresh = n2s(i - 1) end
    end
    return reply('conflict', {
      gen = items[name].gen, kind = h.kind, model = h.model, qty = n2s(h.qty), index = fresh,
    })
  end
  -- A model the catalog lacks (no unit cost) is named before any item's funds or features.
  for i = 1, n do
    if not items[i].unit then
      return reply('item', { index = n2s(i - 1), gen = items[i].gen, refusal = reply('unknown_model') })
    end
  end
  local holds = {}
  for i = 1, n do
    local item = items[i]
    local h, refusal = reserve_new(item.gen, item.kind, item.model, item.qty, item.unit, ttl_ms,
      item.labels)
    if refusal then
      return reply('item', { index = n2s(i - 1), gen = item.gen, refusal = refusal })
    end
    holds[i] = hold_reply(h)
  end
  return reply('ok', { holds = holds, balance = balance_reply() })
end
-- The items' generations and their finished-hold keys.
local function batch_generations(keys, args)
  local finished = {}
  for i = 1, tonumber(args[10]) do finished[args[10 + (i - 1) * 6 + 1]] = keys[4 + i] end
  return finished
end

register('reserve_batch', reserve_batch, batch_generations)
