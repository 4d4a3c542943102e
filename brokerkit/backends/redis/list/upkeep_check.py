"""The check RESCUE (:mod:`.upkeep`) makes before it writes anything: whether the call
would dead-letter a delivery it hands back, where the dead-letter key cannot take one (see
``dead_letters_ok`` in :mod:`.dead_letters`). Lua text placed in RESCUE's body, after the
locals and functions it uses (``due``, ``dead``, ``budget``, ``batches_of``,
``recorded_leases``...).

Its walk spends the budget as the hand-back did before BATCH_COST (2e443f3): a group its
receipts, a dead consumer's batch its elements, no batch BATCH_COST more. The hand-back
charges more and takes a group whole only when it fits in what is left, so the walk
looks at a superset of what the call hands back: safe, if it reads more than needed (up
to about three times as many batches of one)."""

from __future__ import annotations

__all__ = ["WOULD_DEAD_LETTER"]

WOULD_DEAD_LETTER = r"""
-- Whether this call would dead-letter a delivery it hands back (at max_deliveries):
-- read before anything is written (see dead_letters_ok), over the due groups as the
-- call walks them (latest first, each group's latest receipts, spending the budget as
-- the hand-back does or less: a group unfold takes costs one, none of it handed back)
-- and the latest `budget` deliveries of the dead consumers of the call, taken as the
-- call takes them (what the budget leaves is checked by the next call: no read of
-- every batch whole). The walk
-- over the dead consumers spends no more than the hand-back will have spent when it
-- gets there, so it looks at least at what that takes: a batch or lease record a due
-- receipt names (the due groups may delete it for one unit of budget) costs it none.
-- A consumer the hand-back may pass over (a processing list to match) costs a unit a
-- batch and a lease record, so the walk is bounded: what the hand-back then takes that
-- the walk did not reach, its backstop checks before writing (see RESCUE).
local function would_dead_letter()
  local touched = {}  -- batches and receipts the due groups may hand back
  local room = budget
  for _, group in ipairs(due) do
    if room <= 0 then break end
    if known_group(group) and unfolds(group) then
      room = room - 1
    elseif known_group(group) then
      local size = group_size(group)
      local receipts = group_receipts(group, math.max(size - room, 0), size - 1)
      room = room - math.max(#receipts, 1)
      for _, r in ipairs(receipts) do
        local nonce, C, i = batch_of(r)
        touched[r] = true
        if nonce then touched[nonce .. ':' .. C] = true end
        local flags = nonce and flags_of(C, nonce)
        local e, v
        if flags then
          local flag = string.sub(flags, i + 1, i + 1)
          if flag == '0' or flag == '2' then
            v = flag == '0' and batch_value(nonce .. ':' .. C) or redis.call('HGET', EXPIRY, r)
            e = redis.call('LINDEX', need(BATCH_PREFIX .. nonce .. ':' .. C), i)
          end
        else
          local value, kind = lease_of(r)
          local deadline = deadline_of(value)
          if kind ~= 'settled' and deadline and deadline <= t then e, v = peek(r) end
        end
        local deadline = deadline_of(v)
        if e and not (deadline and deadline > t) and dies(e, true) then return true end
      end
    end
  end
  local left = budget  -- at least what the call hands back, in the order it does
  for _, C in ipairs(dead) do
    if left <= 0 then break end
    local nonces = batches_of(C)
    local spends = redis.call('LLEN', proc_of(C)) == 0
    for _, nonce in ipairs(nonces or {}) do
      if left <= 0 then break end
      local name = nonce .. ':' .. C
      local flags = flags_of(C, nonce) or ''
      local batch = need(BATCH_PREFIX .. name)
      local size = redis.call('LLEN', batch)
      local from = math.max(size - left, 0)
      local elements = size > 0 and redis.call('LRANGE', batch, from, -1) or {}
      if not spends then
        left = left - 1
      elseif not touched[name] then
        left = left - #elements
      end
      for i, e in ipairs(elements) do
        local flag = string.sub(flags, from + i, from + i)
        if (flag == '0' or flag == '2') and dies(e, true) then return true end
      end
    end
    if nonces then
      local fields, records = recorded_leases(C, left)
      for j, f in ipairs(fields) do
        local r = receipt_of(f, C)
        if not (spends and touched[r]) then left = left - 1 end
        local _, e = record_of(f, records[j], redis.call('HGET', EXPIRY, r))
        if dies(e, true) then return true end
      end
    end
  end
  return false
end
"""
