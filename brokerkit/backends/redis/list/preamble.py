"""The Lua every redis+list script starts with: the shared ``KEYS`` and ``ARGV``, and
the functions the scripts of :mod:`.scripts` and :mod:`.schedule` are built from (see
:mod:`.scripts` for the data model they keep). Two parts of it are written in modules of
their own and joined in below, each after the functions it calls: the dead letters and
their guard (:mod:`.dead_letters`), and finding and taking away a delivery's lease
(:mod:`.batch_leases`).

Redis runs a script's whole text on every call, so each script takes only the
functions it uses (:func:`with_preamble`): every ``local function`` costs the
creation of a closure per call, about 1.2 us per call for the ones a fetch or an
ack does not use (measured on a private Redis 7.0: the whole preamble 2.2 us over
an empty script, the shared locals alone 0.8 us). In instructions (callgrind, 300
``EVALSHA`` calls with 12 keys and 12 arguments): ``return 1`` 22.9k, the shared
locals 42.7k, what FETCH runs before its body (12 functions) 48.6k, SETTLE (32)
71.6k, the whole preamble 79.8k: about 1k a closure, its upvalues and its share of
the garbage collection.
"""

from __future__ import annotations

import re

from brokerkit.backends.redis.list.batch_leases import BATCH_LEASES
from brokerkit.backends.redis.list.dead_letters import DEAD_LETTERS, GUARD

__all__ = ["CHUNK", "PREAMBLE", "RELEASE_BATCH", "with_preamble"]

#: Members per multi-member command inside a script.
CHUNK = 500
#: A fetch moves at least this many due held messages to the queue (more if it asks
#: for more), so that a backlog of due messages drains in few calls.
RELEASE_BATCH = 100

PREAMBLE = (
    r"""
local QUEUE, DEADLINES, CONSUMERS, DLQ, EXPIRY = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ATTEMPTS, SCHEDULED, RETURNED = KEYS[6], KEYS[7], KEYS[8]
local PROC_PREFIX, LEASE_PREFIX = ARGV[1], ARGV[2]
-- The other per-consumer keys are named like the lease hash ('...:leases:' + consumer):
-- '...:fetches:' + consumer and '...:batch:' + nonce + ':' + consumer (see ListKeys).
local STEM = string.sub(LEASE_PREFIX, 1, -8)
local FETCHES_PREFIX, BATCH_PREFIX = STEM .. 'fetches:', STEM .. 'batch:'
-- A consumer's processing list, lease hash and fetches hash, and the batches a call
-- may touch, are declared after the fixed keys, KEYS[9...]: a script touches no key
-- it was not given (see TopicPlan.keys_for).
local DECLARED = {}
for i = 9, #KEYS do DECLARED[KEYS[i]] = true end
local function declared(C)
  return DECLARED[PROC_PREFIX .. C] and DECLARED[LEASE_PREFIX .. C]
    and DECLARED[FETCHES_PREFIX .. C]
end
local function need(key)
  if not DECLARED[key] then error('brokerkit: the key ' .. key .. ' is not among KEYS') end
  return key
end
local function proc_of(C) return need(PROC_PREFIX .. C) end
local function leases_of(C) return need(LEASE_PREFIX .. C) end
local function fetches_of(C) return need(FETCHES_PREFIX .. C) end
-- This call's view of the batches it looked at, by '<nonce>:<consumer>': their flags
-- (false: no such batch) and their expiry values, as written back.
local FLAGS, VALUES = {}, {}
local MAX = tonumber(ARGV[3])
local TOPIC, RAW_CT = ARGV[4], ARGV[5]
local HEARTBEAT = tonumber(ARGV[6])
-- the dead-letter key's type, once a call asked (see dead_letters_ok)
local DLQ_KIND = nil
local CHUNK = """
    + str(CHUNK)
    + r"""
local RELEASE_BATCH = """
    + str(RELEASE_BATCH)
    + r"""

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The server ms `ms` from now, rounded up: a message held until then is released by
-- a now_ms() no earlier than the exact moment.
local function due_after(ms)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000) + ms
end

local function consumer_of(receipt)
  local colon = string.find(receipt, ':', 1, true)
  return string.sub(receipt, colon + 1)
end

-- (delivered ms, element) of a lease record "<delivered ms>:<element>", as earlier
-- versions wrote every one (see lease_of)
local function lease_parts(value)
  local colon = string.find(value, ':', 1, true)
  local delivered = colon and tonumber(string.sub(value, 1, colon - 1))
  -- not a lease record as brokerkit writes it: whatever it holds goes back to the
  -- queue as a raw element (delivered, never lost, never jamming a script)
  if not delivered then return 0, value end
  return delivered, string.sub(value, colon + 1)
end

-- The deadline in an expiry value, or nil for none. A lease's value is
-- "<deadline>.<delivered ms>" (server ms), read as one number: the deadline and a
-- fraction below 1 (a lease is live for one ms more), as an earlier version reads it
-- too; earlier versions wrote "<deadline>" alone. Anything else reads as expired.
local function deadline_of(v)
  if not v then return nil end
  return tonumber(v) or 0
end

-- The delivery time in an expiry value (see deadline_of), or nil
local function delivered_of(v)
  local dot = v and string.find(v, '.', 1, true)
  return dot and tonumber(string.sub(v, dot + 1)) or nil
end

-- The expiry value v with its deadline moved to new (the delivery time kept)
local function renewed_value(new, v)
  local dot = v and string.find(v, '.', 1, true)
  if dot then return new .. string.sub(v, dot) end
  return new
end

-- The field of a lease in its consumer's lease hash: the receipt without its
-- ':<consumer>' (the hash is that consumer's). An earlier version recorded a lease under
-- the whole receipt, as "<delivered ms>:<element>": a field's form says how its record
-- reads (record_of).
local function field_of(receipt)
  return string.sub(receipt, 1, string.find(receipt, ':', 1, true) - 1)
end

-- The receipt of a field of consumer C's lease hash (see field_of)
local function receipt_of(field, C)
  if string.find(field, ':', 1, true) then return field end
  return field .. ':' .. C
end

-- (delivered ms, element) of a lease record under field (see field_of), its expiry
-- value (if any) giving the delivery time of one in the new form
local function record_of(field, value, expiry)
  if string.find(field, ':', 1, true) then return lease_parts(value) end
  return delivered_of(expiry) or 0, value
end

-- The lease an earlier version recorded for receipt in its consumer's lease hash: the
-- field it is under (see field_of: the short one, or the whole receipt) and its record
-- (nil: none), and the hash's key.
local function recorded_lease(receipt)
  local leases = leases_of(consumer_of(receipt))
  local field = field_of(receipt)
  local record = redis.call('HGET', leases, field)
  if not record then
    field = receipt
    record = redis.call('HGET', leases, field)
  end
  return field, record, leases
end

-- redis.call(command, key, items[first..last]) in chunks of CHUNK items
local function call_chunked(command, key, items, step)
  for i = 1, #items, CHUNK * step do
    redis.call(command, key, unpack(items, i, math.min(i + CHUNK * step - 1, #items)))
  end
end

-- redis.call(command, key, items[first..last]) CHUNK items at a time, the replies joined
local function gather(command, key, items, first, last)
  local out = {}
  for i = first, last, CHUNK do
    local got = redis.call(command, key, unpack(items, i, math.min(i + CHUNK - 1, last)))
    for k = 1, #got do out[#out + 1] = got[k] end
  end
  return out
end

-- (nonce, first index, how many, ':<consumer>') of a lease group brokerkit wrote,
-- '<nonce><first>+<n>:<consumer>', or nil for any other member (a receipt, a group of
-- one; or another program's: counts that are no whole numbers, none, or past 14 digits).
local function group_parts(g)
  local colon = string.find(g, ':', 1, true)
  local plus = string.find(g, '+', 1, true)
  local dash = string.find(g, '-', 1, true)
  if not colon or not plus or not dash or plus > colon or dash > plus then return nil end
  -- digits only: tonumber also reads 'inf', '0x10' and '1e300'
  local first, n = string.sub(g, dash + 1, plus - 1), string.sub(g, plus + 1, colon - 1)
  if not string.find(first, '^%d+$') or not string.find(n, '^%d+$') then return nil end
  first, n = tonumber(first), tonumber(n)
  if n < 1 or #string.format('%d', first + n) > 14 then return nil end
  return string.sub(g, 1, dash), first, n, string.sub(g, colon)
end

-- The receipts of lease group g from its index `from` to `to` (0 to n - 1: see the
-- module's documentation), or {g} for a member that is no group (group_parts).
local function group_receipts(g, from, to)
  local nonce, first, n, tail = group_parts(g)
  if not nonce then return {g} end
  local out = {}
  for i = from or 0, to or n - 1 do
    out[#out + 1] = nonce .. string.format('%d', first + i) .. tail
  end
  return out
end

-- A group split after its first k receipts: (the group of those k, the group of the
-- rest), or nil when g is not a group brokerkit wrote.
local function split_group(g, k)
  local nonce, first, n, tail = group_parts(g)
  if not nonce or k < 1 or k >= n then return nil end
  local f = string.format
  return nonce .. f('%d+%d', first, k) .. tail, nonce .. f('%d+%d', first + k, n - k) .. tail
end

-- No lease left: every group is empty, drop the index.
local function tidy()
  if redis.call('HLEN', EXPIRY) == 0 then redis.call('DEL', DEADLINES) end
end

-- The count of a hand-back wrapper "BKR<n>\n": 1 to 15 ASCII digits (exact in a Lua
-- number), as brokerkit writes it (count_text); nil for anything else.
local function wrapped_count(e)
  local d = string.match(e, '^BKR(%d+)\n')
  if d and #d <= 15 then return d end
  return nil
end

-- A count as a wrapper or the attempts hash holds it: digits, at most 15 of them.
local function count_text(n)
  if n ~= n then n = 0 end  -- NaN (a count another program wrote): no count
  return string.format('%d', math.min(math.max(n, 0), 999999999999999))
end

-- (deliveries before, the element as published)
local function unwrap(e)
  local d = wrapped_count(e)
  if d then return tonumber(d), string.sub(e, #d + 5) end
  return 0, e
end

"""
    + DEAD_LETTERS
    + r"""-- Whether an element is raw: no hand-back wrapper and no brokerkit envelope (one
-- that starts like an envelope but is none is raw to the consumer's decoder too).
local function is_raw(e)
  local head = string.sub(e, 1, 3)
  if head == 'BK1' then return envelope(e, true) == nil end
  return head ~= 'BKR' or wrapped_count(e) == nil
end

-- n more elements at the head of the queue came back (RETURNED counts them; one
-- another program wrote a non-number or a negative one into is started again)
local function count_returned(n)
  local now = redis.pcall('INCRBY', RETURNED, n)
  if type(now) ~= 'number' or now < n then redis.call('SET', RETURNED, n) end
end

-- A delivered element comes back: next out of the queue (or, with a due time in
-- server ms, into SCHEDULED under the tag until then), or dead-lettered when
-- rejected or when it has been delivered max_deliveries times. A raw element goes
-- back as it was, its count in ATTEMPTS.
local function hand_back(e, requeue, reason, due, tag)
  local n, inner = unwrap(e)
  local digest
  if is_raw(e) then
    digest = redis.sha1hex(e)
    n = tonumber(redis.call('HGET', ATTEMPTS, digest) or '0') or 0
  end
  local deliveries = n + 1
  if requeue and (MAX == 0 or deliveries < MAX) then
    local back = e
    if digest then
      redis.call('HSET', ATTEMPTS, digest, count_text(deliveries))
    else
      back = 'BKR' .. count_text(deliveries) .. '\n' .. inner
    end
    if due then
      redis.call('ZADD', SCHEDULED, due, 'R' .. tag .. '\n' .. back)
    else
      redis.call('RPUSH', QUEUE, back)
      count_returned(1)
    end
  else
    if digest then redis.call('HDEL', ATTEMPTS, digest) end
    dead_letter(inner, reason, deliveries)
  end
end

-- Give the queue's head back what a transaction of moves run without MULTI left under
-- consumer C's moving key, if declared (see FETCH, Moves), in order, the shorter list
-- moving element by element (a repair). A message handed back meanwhile ends up behind
-- them (RETURNED then counts others once).
local function give_back_lent(C)
  local moving = STEM .. 'moving:' .. C
  if not DECLARED[moving] or redis.call('EXISTS', moving) == 0 then return end
  local queued, lent = redis.call('LLEN', QUEUE), redis.call('LLEN', moving)
  if queued <= lent then
    for _ = 1, queued do redis.call('LMOVE', QUEUE, moving, 'RIGHT', 'LEFT') end
    redis.call('RENAMENX', moving, QUEUE)  -- the queue is empty, so gone
  else
    for _ = 1, lent do redis.call('LMOVE', moving, QUEUE, 'LEFT', 'RIGHT') end
  end
end

-- Move up to limit held messages due by t to the queue, in due order: delayed
-- publishes to the tail (as LPUSH would), delayed retries to the head (as an
-- immediate requeue would). Returns how many moved. A member is a tag, '\n' and the
-- element: a tag 'R...' is a retry's, any other a publish's (see schedule.hold_member).
local function release_due(t, limit)
  local due = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', t, 'LIMIT', 0, limit)
  if #due == 0 then return 0 end
  local retries = {}
  for _, m in ipairs(due) do
    local nl = string.find(m, '\n', 1, true)
    local e = nl and string.sub(m, nl + 1) or m
    if string.sub(m, 1, 1) == 'R' then
      retries[#retries + 1] = e
    else
      redis.call('LPUSH', QUEUE, e)
    end
  end
  for i = #retries, 1, -1 do redis.call('RPUSH', QUEUE, retries[i]) end
  if #retries > 0 then count_returned(#retries) end
  call_chunked('ZREM', SCHEDULED, due, 1)
  return #due
end

-- Milliseconds from t until the next held message is due (-1: none is held).
local function next_due_wait(t)
  local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
  if not first[2] then return -1 end
  return math.max(tonumber(first[2]) - t, 0)
end

-- A raw element is settled for good: forget its count.
local function forget_raw(e)
  if e and is_raw(e) then redis.call('HDEL', ATTEMPTS, redis.sha1hex(e)) end
end
"""
    + BATCH_LEASES
    + GUARD
    + r"""-- Elements in a consumer's processing list that no lease covers: moved there by
-- a BLMOVE whose lease was never recorded (the reply was lost, or the consumer
-- died). Lists written by versions that kept leased elements there too are
-- matched against the leases, so those are not handed back twice: against the lease
-- hash, its records read here (bodies too) only while it holds at most ORPHANS_READ;
-- past that, by the caller, outside any script, which gives `given` = {the list's
-- length, the hash's length, the indexes of the orphans in the list} to a next call
-- (taken while both lengths are still those). Returns nil when not decided here.
local function orphans(consumer, given)
  local ORPHANS_READ = 100
  local proc = proc_of(consumer)
  -- the usual case, an empty list: the lease hash, however big, is not read
  local listed = redis.call('LLEN', proc)
  if listed == 0 then return {} end
  local leases = leases_of(consumer)
  local recorded = redis.call('HLEN', leases)
  if recorded == 0 then return redis.call('LRANGE', proc, 0, -1) end
  if given and tonumber(given[1]) == listed and tonumber(given[2]) == recorded then
    local found = {}
    for k = 3, #given do found[#found + 1] = redis.call('LINDEX', proc, tonumber(given[k])) end
    return found
  end
  if recorded > ORPHANS_READ then return nil end
  local held = {}
  local records = redis.call('HGETALL', leases)
  for j = 1, #records, 2 do
    local _, e = record_of(records[j], records[j + 1])
    held[e] = (held[e] or 0) + 1
  end
  local found = {}
  for _, e in ipairs(redis.call('LRANGE', proc, 0, -1)) do
    if (held[e] or 0) > 0 then held[e] = held[e] - 1 else found[#found + 1] = e end
  end
  return found
end
"""
)


def _split(preamble: str) -> tuple[str, list[tuple[str, str]]]:
    """The shared locals, then each ``local function`` (with the comment above it)
    as (name, text), in order."""
    starts = list(re.finditer(r"^(?:--[^\n]*\n)*local function (\w+)", preamble, re.MULTILINE))
    first = next(m for m in starts if m.group(1) == "now_ms")  # the shared locals end
    starts = starts[starts.index(first) :]
    ends = [m.start() for m in starts[1:]] + [len(preamble)]
    named = [(m.group(1), preamble[m.start() : end]) for m, end in zip(starts, ends, strict=True)]
    return preamble[: first.start()], named


_HEAD, _FUNCTIONS = _split(PREAMBLE)


def with_preamble(body: str) -> str:
    """``body`` after the shared locals and the preamble's functions it calls, and
    those they call, in the preamble's order (a Lua local is seen only below it)."""
    used: set[str] = set()
    text = body
    while True:
        code = re.sub(r"--[^\n]*", "", text)  # a name in a comment is no call
        found = {
            name for name, _ in _FUNCTIONS if name not in used and re.search(rf"\b{name}\b", code)
        }
        if not found:
            break
        used |= found
        text = "".join(part for name, part in _FUNCTIONS if name in found)
    kept = "".join(part for name, part in _FUNCTIONS if name in used)
    return _HEAD + kept + body
