"""The Lua that finds and takes away a redis+list delivery's lease: the lease kept by
its fetch's batch (the batch's flags in the consumer's fetches hash, its expiry value,
its batch list) or an earlier version's lease record, read by ``lease_of`` and taken
away by ``release``. Part of the preamble (see :mod:`.preamble`: a script carries these
functions only when it calls them), after the functions they call."""

from __future__ import annotations

__all__ = ["BATCH_LEASES"]

BATCH_LEASES = r"""
-- The batch of a receipt "<nonce><i>:<consumer>": (the nonce, the consumer, the index
-- in the batch list '<BATCH_PREFIX><nonce>:<consumer>'), or nil for a receipt that
-- names no batch.
local function batch_of(receipt)
  local dash = string.find(receipt, '-', 1, true)
  local colon = string.find(receipt, ':', 1, true)
  if not dash or not colon or dash > colon then return nil end
  local i = tonumber(string.sub(receipt, dash + 1, colon - 1))
  if not i then return nil end
  return string.sub(receipt, 1, dash), string.sub(receipt, colon + 1), i
end

-- The run of receipts of one batch at ARGV[k] (see plan.batch_runs): the batch's name
-- '<nonce>:<consumer>', its nonce and consumer, how many receipts, whether they are the
-- indexes 0 .. n - 1 (named by minus the count: the whole of a fetch), a function giving
-- the index of the run's s-th receipt (from 0) as the receipt names it, and where the
-- next run starts.
local function run_at(k)
  local name, n = ARGV[k], tonumber(ARGV[k + 1]) or 0
  local whole = n < 0
  if whole then n = -n end
  local first = k + 2
  local function index(s)
    if whole then return s end
    return ARGV[first + s]
  end
  local colon = string.find(name, ':', 1, true)
  local nonce, C = string.sub(name, 1, colon - 1), string.sub(name, colon + 1)
  return name, nonce, C, n, whole, index, whole and first or first + n
end

-- The flags of consumer C's batch `nonce`, one character per delivery: '0' leased
-- under the batch's expiry value, '2' under an expiry value of its own (extended by
-- hand), '1' settled; or false when there is no such batch.
local function flags_of(C, nonce)
  local name = nonce .. ':' .. C
  local f = FLAGS[name]
  if f == nil then
    f = redis.call('HGET', fetches_of(C), nonce) or false
    FLAGS[name] = f
  end
  return f
end

-- The expiry value of the batch `name` ('<nonce>:<consumer>'), or false
local function batch_value(name)
  local v = VALUES[name]
  if v == nil then
    v = redis.call('HGET', EXPIRY, name) or false
    VALUES[name] = v
  end
  return v
end

-- Consumer C's batch `nonce` with the flags of deliveries `marks` (index -> flag)
-- changed; `settling`: how many leased deliveries the marks settle, when the caller
-- knows (every mark '1', on a leased delivery). The batch goes with its last leased
-- delivery; until then a settled delivery's element is blanked, its memory freed.
local function set_flags(C, nonce, marks, settling)
  local name, flags = nonce .. ':' .. C, flags_of(C, nonce)
  local batch = need(BATCH_PREFIX .. name)
  -- the usual ack settles every delivery still leased: no new flags to write
  local _, leased = string.gsub(flags, '[02]', '')
  local settled = settling or 0
  if not settling then
    for i, m in pairs(marks) do
      local was = string.sub(flags, i + 1, i + 1)
      if m ~= '1' then settled = -1; break end
      if was == '0' or was == '2' then settled = settled + 1 end
    end
  end
  if settled < leased then
    local at, parts, order = 1, {}, {}
    for i in pairs(marks) do order[#order + 1] = i end
    table.sort(order)
    for _, i in ipairs(order) do
      parts[#parts + 1] = string.sub(flags, at, i)
      parts[#parts + 1] = marks[i]
      at = i + 2
    end
    parts[#parts + 1] = string.sub(flags, at)
    flags = table.concat(parts)
  end
  if settled < leased and string.find(flags, '[02]') then
    redis.call('HSET', fetches_of(C), nonce, flags)
    for i, m in pairs(marks) do
      if m == '1' then redis.pcall('LSET', batch, i, '') end
    end
    FLAGS[name] = flags
  else
    redis.call('HDEL', fetches_of(C), nonce)
    redis.call('HDEL', EXPIRY, name)
    redis.call('DEL', batch)
    -- and its lease group, unless a rescue split it (the parts go when they fall due)
    redis.call('ZREM', DEADLINES, nonce .. '0+' .. #flags .. ':' .. C)
    FLAGS[name] = false
  end
end

-- The expiry value of a delivery's lease (nil when it has none) and how the lease is
-- kept: 'batch' (the batch's value), 'own' (a value of its own, in a batch), 'settled'
-- (a batch's delivery that is no longer leased), or 'record' (an earlier version's
-- lease, its element in the consumer's lease hash, or none at all); then, for a
-- receipt that names a batch, its nonce, consumer and index (see batch_of).
local function lease_of(receipt)
  local nonce, C, i = batch_of(receipt)
  local flags = nonce and flags_of(C, nonce)
  if flags then
    local flag = string.sub(flags, i + 1, i + 1)
    if flag == '0' then return batch_value(nonce .. ':' .. C) or nil, 'batch', nonce, C, i end
    if flag == '2' then
      return redis.call('HGET', EXPIRY, receipt) or nil, 'own', nonce, C, i
    end
    return nil, 'settled', nonce, C, i
  end
  return redis.call('HGET', EXPIRY, receipt) or nil, 'record', nonce, C, i
end

-- Take one lease away (its deadline passed, or it is settled): returns the element
-- (nil when there was no such lease) and the lease's expiry value.
local function release(receipt)
  local value, kind, nonce, C, i = lease_of(receipt)
  if kind == 'settled' then return nil, nil end
  if kind ~= 'record' then
    if kind == 'own' then redis.call('HDEL', EXPIRY, receipt) end
    local e = redis.call('LINDEX', need(BATCH_PREFIX .. nonce .. ':' .. C), i)
    set_flags(C, nonce, {[i] = '1'})
    return e or nil, value
  end
  -- a lease an earlier version recorded, in the consumer's lease hash
  redis.call('HDEL', EXPIRY, receipt)
  local field, record, leases = recorded_lease(receipt)
  if not record then return nil, value end
  redis.call('HDEL', leases, field)
  local _, e = record_of(field, record, value)
  return e, value
end

"""
