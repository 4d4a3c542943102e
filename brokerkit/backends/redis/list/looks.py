"""The Lua script of redis+list's ``inspect``: what a topic holds and who holds it,
counted in calls of bounded work (see :func:`.upkeep_calls_async.inspect_once`, and
:mod:`.scripts` for the keys, the arguments every script shares and the data model)."""

from __future__ import annotations

from brokerkit.backends.redis.list.preamble import with_preamble

__all__ = ["INSPECT"]


#: ARGV[7] "-": this call only counts the leases of the names that follow, and returns
#: {in flight, oldest delivery ms or -1, then per consumer: name, leases}; else how many
#: consumers follow, ARGV[8...] (named by an earlier call's count: listed too), and the
#: call returns {queue length, dead letters, server ms, in flight, oldest delivery ms or
#: -1, consumers, then per consumer: name, heartbeat deadline or -1, processing length,
#: leases; then the number of held messages; last, the next element to be delivered (the
#: queue's tail), or false}. The rest of ARGV: fields of the expiry hash to count (at
#: most INSPECT_LEASES a call, see inspect_once): a batch's, counted by its flags, or a
#: receipt's with a value of its own that is no batch's delivery (an earlier version's
#: lease). A field gone since the caller listed it counts nothing.
INSPECT = with_preamble(
    r"""
local t = now_ms()
local counting = ARGV[7] == '-'
local listed = counting and 0 or tonumber(ARGV[7])
local names, order = {}, {}
if not counting then
  local registered = redis.call('ZRANGE', CONSUMERS, 0, -1, 'WITHSCORES')
  for i = 1, #registered, 2 do
    names[registered[i]] = tonumber(registered[i + 1])
    order[#order + 1] = registered[i]
  end
  for k = 8, 7 + listed do
    if names[ARGV[k]] == nil then names[ARGV[k]] = -1; order[#order + 1] = ARGV[k] end
  end
end
local oldest, leases, in_flight = -1, {}, 0
local function seen(C, delivered, n)
  if names[C] == nil then names[C] = -1; order[#order + 1] = C end
  leases[C] = (leases[C] or 0) + n
  in_flight = in_flight + n
  if delivered and n > 0 and (oldest < 0 or delivered < oldest) then oldest = delivered end
end
local fields = {unpack(ARGV, 8 + listed)}
local values = gather('HMGET', EXPIRY, fields, 1, #fields)
local batches, by = {}, {}  -- per consumer: the nonces of its batches, their values
for j, r in ipairs(fields) do
  local v = values[j]
  local colon = string.find(r, ':', 1, true)
  -- (a field without a consumer is no lease: another program's, not counted)
  local C = colon and consumer_of(r)
  local nonce = colon and batch_of(r)
  if not colon or not v then
  elseif string.sub(r, colon - 1, colon - 1) == '-' then
    -- a batch: its leased deliveries are the flags '0' and '2' (read below, a
    -- consumer's at once)
    seen(C, nil, 0)
    local b = by[C]
    if not b and declared(C) then
      b = {C, {}, {}}
      by[C], batches[#batches + 1] = b, b
    end
    if b then b[2][#b[2] + 1], b[3][#b[3] + 1] = string.sub(r, 1, colon - 1), v end
  elseif not (nonce and declared(C) and redis.call('HEXISTS', fetches_of(C), nonce) == 1) then
    -- (not a batch's delivery with a value of its own: counted with its batch)
    local delivered = delivered_of(v)
    if not delivered and declared(C) then
      -- an earlier version's lease: the time is in its record (see record_of)
      local value = redis.call('HGET', leases_of(C), r)
      delivered = value and record_of(r, value, v)
    end
    seen(C, delivered, 1)
  end
end
for _, b in ipairs(batches) do
  local flags = gather('HMGET', fetches_of(b[1]), b[2], 1, #b[2])
  for j, f in ipairs(flags) do
    local _, n = string.gsub(f or '', '[02]', '')
    seen(b[1], delivered_of(b[3][j]), n)
  end
end
if counting then
  local out = {in_flight, oldest}
  for _, C in ipairs(order) do
    out[#out + 1] = C
    out[#out + 1] = leases[C] or 0
  end
  return out
end
local out = {redis.call('LLEN', QUEUE), redis.call('LLEN', DLQ), t, in_flight, 0, #order}
for _, C in ipairs(order) do
  -- a consumer that appeared after the caller looked is counted by the next inspect
  local proc = declared(C) and redis.call('LLEN', proc_of(C)) or 0
  out[#out + 1] = C
  out[#out + 1] = names[C]
  out[#out + 1] = proc
  out[#out + 1] = leases[C] or 0
end
out[5] = oldest
out[#out + 1] = redis.call('ZCARD', SCHEDULED)
out[#out + 1] = redis.call('LINDEX', QUEUE, -1)
return out
"""
)
