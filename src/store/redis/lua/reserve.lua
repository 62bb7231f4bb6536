-- Reserve (Account::reserve). KEYS[5] the generation's finished-hold key. ARGV[9] generation
-- id, [10] kind, [11] model, [12] quantity, [13] unit cost, [14] ttl_ms, [15] labels (JSON).
-- Replies: ok|replayed {hold, balance} | conflict {kind, model, qty} | denied {plan, open}
--        | insufficient {needed, available} | unknown_model
local function reserve()
  local gen, kind, model = ARGV[9], ARGV[10], ARGV[11]
  local qty, unit, ttl_ms = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
  local existing = find_hold(gen, K_OWN)
  if existing then
    if existing.kind == kind and existing.model == model and existing.qty == qty then
      return reply('replayed', { hold = hold_reply(existing), balance = balance_reply() })
    end
    return reply('conflict', { kind = existing.kind, model = existing.model, qty = n2s(existing.qty) })
  end
  local h, refusal = reserve_new(gen, kind, model, qty, unit, ttl_ms, ARGV[15])
  if refusal then return refusal end
  return reply('ok', { hold = hold_reply(h), balance = balance_reply() })
end
register('reserve', reserve, own_generation)
