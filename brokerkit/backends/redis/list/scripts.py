"""The Lua scripts of the redis+list backend: every step that touches more than one
key runs as one atomic script, judged by the server's clock (``TIME``).

Every script takes the same first keys and arguments (see :data:`PREAMBLE`)::

    KEYS[1] queue       the list producers LPUSH to and consumers take from the right
    KEYS[2] deadlines   ZSET lease group -> the earliest deadline it may hold (server ms)
    KEYS[3] consumers   ZSET consumer -> heartbeat deadline (server ms)
    KEYS[4] dead letters, the queue of the dead-letter topic
    KEYS[5] expiry      HASH receipt -> "<lease deadline>.<delivered>" (server ms)
    KEYS[6] attempts    HASH SHA-1 of a raw element -> its deliveries so far
    KEYS[7] scheduled   ZSET held message -> due time (server ms)
    KEYS[8...] the processing list and the lease hash of each consumer the call may
                touch (see :meth:`.TopicPlan.keys_for`): no script builds a key name
                it was not given, so every key is declared, as Redis Cluster wants
    ARGV[1] prefix of processing lists    (+ consumer)
    ARGV[2] prefix of lease hashes        (+ consumer): <nonce><seq> -> the element
    ARGV[3] max_deliveries (0: no limit)
    ARGV[4] topic name (for dead-letter headers)
    ARGV[5] content type of dead-lettered raw elements ("" : guess JSON or bytes)
    ARGV[6] heartbeat ttl in ms

The per-consumer keys are named from the prefixes and carry the topic's hash tag, so
they live in the cluster slot of the fixed keys; a script uses one only when the
caller declared it in ``KEYS`` (a fetch, settle or extend declares the consumers its
receipts name; a rescue or inspect first reads which consumers there are, and leaves
one that appeared meanwhile for its next run).

A delivered element lives in exactly one place: its consumer's lease hash, with
its deadline and delivery time in ``expiry`` (the two are always written and removed
together, and ``expiry`` is the authority on whether a lease is live). The element is
stored as it came out of the queue, never concatenated with anything in a script (a
concatenation copies the body once more), under the receipt without its
``:<consumer>`` (the hash is that consumer's: the consumer's name is not stored once
per delivery there). A lease recorded by an earlier version has an expiry value of
only ``<deadline>`` and a record ``<delivered ms>:<element>`` under the whole receipt;
the scripts read both (``field_of`` and ``record_of`` in the preamble). A
consumer's processing
list only holds what a ``BLMOVE`` moved and no lease covers yet: the script that
records the lease takes it out of the list.

A receipt is ``<nonce><seq>:<consumer>``: unique per delivery, and it names the
consumer whose lease hash holds the delivery.

``deadlines`` indexes the leases for rescuers by *lease group*: a fetch of ``n``
deliveries adds one member ``<nonce><first>+<n>:<consumer>`` (naming the receipts
``<nonce><first>`` ... ``<nonce><first + n - 1>``), and shortening one lease by hand
adds the receipt itself as a group of one. A group's score is never later than the
deadline of any live lease in it; a rescuer visiting a group hands back what has
expired and re-scores it to its earliest live deadline, or removes it. So a fetch or
an ack costs one ``deadlines`` command however many deliveries it covers, and a
renewal none.

An element handed back after a delivery is wrapped as ``BKR<n>\\n<element>``: the
message was delivered ``n`` times before. A fresh element has no wrapper. A fetch hands
such an element out alone (a batch stops before it), so that a message that crashes its
consumer cannot take the messages fetched with it to the dead-letter topic. A raw element
(no ``BK1`` envelope: another program wrote it, or ``raw=true`` did) goes back as it was,
so that the program that reads the list can still read it; its count is kept in the
``attempts`` hash under the element's SHA-1 (identical raw elements share one count), and
a fetch reports it by wrapping the element in its reply only.

A message held for a due time (``publish(delay=)``, ``nack(delay=)``) waits in
``scheduled``, scored by its due time in server milliseconds, as
``P<message id>\n<element>`` (a delayed publish) or ``R<receipt>\n<element>`` (a
delayed retry, the element as a hand-back would requeue it: wrapped, or raw with its
count in ``attempts``); the tag keeps members unique. Once due, every script that
fetches or rescues moves it to the queue (:func:`release_due` in the preamble): a
publish to the tail, as LPUSH would, a retry to the head, as an immediate requeue
would, in due order.

Multi-member commands (``HSET``, ``HMGET``, ``HDEL``...) take at most
:data:`CHUNK` members per call, well under Lua's ``unpack`` limit.
"""

from __future__ import annotations

from brokerkit.backends.redis.list.preamble import CHUNK, PREAMBLE, RELEASE_BATCH, with_preamble

__all__ = ["CHUNK", "EXTEND", "FETCH", "INSPECT", "PREAMBLE", "RELEASE_BATCH", "RESCUE", "SETTLE"]


#: ARGV[7] consumer, [8] how many, [9] lease ms, [10] receipt nonce, [11] first
#: sequence number, [12] (optional) "1": first lease the tail of the consumer's
#: processing list, where a BLMOVE sent just before this call, in the same pipeline,
#: moved what it waited for (or an element a lost reply left there: never delivered);
#: such a wake-up call leaves held messages that fell due to the consumer's next
#: release (it blocked only after one, and only until the next due time it knew of).
#: Returns the elements, in delivery order; the i-th (from 0) has the receipt
#: ``<nonce><first + i>:<consumer>``.
FETCH = with_preamble(
    r"""
local WIDE = '"""
    + "~" * 65
    + r"""'  -- never a receipt (one has a ':'); see `wide`
local C = ARGV[7]
local want, lease_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local nonce, seq = ARGV[10], tonumber(ARGV[11])
local woken = ARGV[12] == '1'
local t = now_ms()
redis.call('ZADD', CONSUMERS, t + HEARTBEAT, C)
-- A consumer blocks only after it moved what was due, and only until the next due
-- time it knows of (see _fetch): its wake-up call need not look again.
if not woken then release_due(t, math.max(want, RELEASE_BATCH)) end
local out = {}
-- The BLMOVEd element is leased only if it is still there: a rescuer that took
-- this consumer for dead has already handed it back.
if woken then
  local moved = redis.call('RPOP', proc_of(C))
  if moved then out[1] = moved end
end
-- A message that comes back (nacked, or its lease ran out: maybe it crashed its
-- consumer) goes out alone, so that a poison message cannot take the messages
-- fetched with it down with it, time after time, until they are dead-lettered unseen.
local counted = redis.call('HLEN', ATTEMPTS) > 0
local function came_back(e)
  if string.sub(e, 1, 3) == 'BKR' and wrapped_count(e) then return true end
  return counted and is_raw(e) and redis.call('HEXISTS', ATTEMPTS, redis.sha1hex(e)) == 1
end
if #out == 0 and want == 1 then
  -- one wanted: the next one goes out, whatever it is
  local e = redis.call('RPOP', QUEUE)
  if e then out[1] = e end
elseif #out < want and not (out[1] and came_back(out[1])) then
  -- a look at the next one first: a queue of messages that came back (a rescue
  -- handed back many) is not popped a batch at a time only to push all but one back
  local next_out = redis.call('LINDEX', QUEUE, -1)
  if next_out and came_back(next_out) then
    if #out == 0 then out[1] = redis.call('RPOP', QUEUE) end  -- else the batch stops
  elseif next_out then
    local taken = redis.call('RPOP', QUEUE, want - #out)
    if taken then
      for _, e in ipairs(taken) do out[#out + 1] = e end
    end
  end
end
if #out == 0 then return out end
local keep = #out
for i, e in ipairs(out) do
  if came_back(e) then
    keep = (i == 1) and 1 or (i - 1)
    break
  end
end
for i = #out, keep + 1, -1 do  -- back where they were, at the head of the queue
  redis.call('RPUSH', QUEUE, out[i])
  out[i] = nil
end
local deadline, tail = t + lease_ms, ':' .. C
-- The deadline and the delivery time in expiry; the element, as it is, in the lease
-- record (no copy of the body made here: see deadline_of).
local stamped = deadline .. '.' .. t
-- Redis keeps a hash of up to 128 short entries as a listpack, where every field is
-- found by a scan: a batch's HSET here, and its ack's HMGET and HDEL, would take time
-- growing with the square of the batch. A field longer than 64 bytes makes a hash a
-- hash table for good; it goes again in this call (a batch of 16 or more: a smaller
-- one gains less than the HDEL costs). So for expiry, and for the lease hash when no
-- element is longer (an envelope always is; a short raw element is not).
local wide = #out >= 16
local expiry, records = {}, {}
if wide then expiry[1], expiry[2] = WIDE, '' end
local at = wide and 2 or 0
-- Formatting a number is slow in this Lua (sprintf): a batch takes the last two digits
-- of each sequence number from a table of constants.
local DIGITS = #out >= 8 and {"""
    + ", ".join(f"'{i:02d}'" for i in range(100))
    + r"""} or nil
local head  -- the nonce and the sequence number's hundreds
local short = wide  -- no element longer than 64 bytes (so far)
for i, e in ipairs(out) do
  local n, f = seq + i - 1, nil  -- its field in the consumer's lease hash: field_of
  if not DIGITS or n < 100 then
    f = nonce .. n
  else
    local low = n % 100
    if not head or low == 0 then head = nonce .. (n - low) / 100 end
    f = head .. DIGITS[low + 1]
  end
  expiry[at + 2 * i - 1], expiry[at + 2 * i] = f .. tail, stamped
  records[2 * i - 1], records[2 * i] = f, e
  if short and #e > 64 then short = false end
end
if short then records[2 * #out + 1], records[2 * #out + 2] = WIDE, '' end
-- The elements are out of the queue: if a lease cannot be written (a key of the
-- wrong type), undo and put them back as they were before failing: nothing is lost.
local ok, err = pcall(function()
  redis.call('ZADD', DEADLINES, deadline, nonce .. seq .. '+' .. #out .. tail)
  call_chunked('HSET', EXPIRY, expiry, 2)
  if wide then redis.call('HDEL', EXPIRY, WIDE) end
  call_chunked('HSET', leases_of(C), records, 2)
  if short then redis.call('HDEL', leases_of(C), WIDE) end
end)
if not ok then
  local receipts, fields = {}, {}
  for i = 1, #expiry, 2 do receipts[#receipts + 1] = expiry[i] end
  for i = 1, #records, 2 do fields[#fields + 1] = records[i] end
  pcall(call_chunked, 'HDEL', EXPIRY, receipts, 1)
  pcall(call_chunked, 'HDEL', leases_of(C), fields, 1)
  pcall(redis.call, 'ZREM', DEADLINES, nonce .. seq .. '+' .. #out .. tail)
  for i = #out, 1, -1 do redis.call('RPUSH', QUEUE, out[i]) end
  return redis.error_reply(type(err) == 'table' and err.err or tostring(err))
end
-- A raw element that came back carries its count in the reply only (the queue and
-- the lease keep it as it was).
if counted then  -- FETCH writes no count: the look above still holds
  for i, e in ipairs(out) do
    if is_raw(e) then
      local n = redis.call('HGET', ATTEMPTS, redis.sha1hex(e))
      if n then out[i] = 'BKR' .. count_text(tonumber(n) or 0) .. '\n' .. e end
    end
  end
end
return out
"""
)

#: ARGV[7] "ack", "requeue" or "reject"; ARGV[8...] receipts in delivery order. Or
#: ARGV[7] "requeue+" / "reject+", ARGV[8] delay ms (0: none), ARGV[9] the dead
#: letter's reason ("": the usual one), ARGV[10...] receipts.
#: Returns the stale receipts (lease expired or taken away), which are left alone
#: (an expired one still in place is handed back, as a rescuer would).
SETTLE = with_preamble(
    r"""
local mode = ARGV[7]
local t = now_ms()
local stale = {}
if mode == 'ack' then
  local done, nd, by_consumer = {}, 0, {}
  local find, sub = string.find, string.sub
  local tail, mine = '', nil  -- ':<consumer>' of the previous receipt, and its fields
  local counted = redis.call('HLEN', ATTEMPTS) > 0
  local values_of, values = {}, nil  -- only when counted: how to read the records
  -- The leases of one fetch share one expiry value (a renewal rewrites them alike), and
  -- Lua keeps one copy of equal strings: each distinct value is read once.
  local last, live, older = nil, false, false
  for i = 8, #ARGV, CHUNK do
    local j = math.min(i + CHUNK - 1, #ARGV)
    local found = redis.call('HMGET', EXPIRY, unpack(ARGV, i, j))
    for k = i, j do
      local r, v = ARGV[k], found[k - i + 1]
      if v ~= last then
        last = v
        local deadline = deadline_of(v)  -- garbage: taken as expired
        live = deadline ~= nil and deadline > t
        -- a lease an earlier version recorded (an expiry value without '.'): its record
        -- is under the whole receipt (it is looked for under both)
        older = live and not find(v, '.', 1, true)
      end
      if not live then
        -- expired or taken away (v false: a record left without its expiry value goes
        -- back too, see release)
        local e = release(r, v)
        if e then hand_back(e, true, 'max_deliveries') end
        stale[#stale + 1] = r
      else
        nd = nd + 1
        done[nd] = r
        -- the usual batch has one consumer: compare tails instead of cutting strings
        local at = #r - #tail + 1
        if not (mine and find(r, ':', 1, true) == at and find(r, tail, at, true) == at) then
          local C = consumer_of(r)
          tail, mine = ':' .. C, by_consumer[C]
          if not mine then mine = {}; by_consumer[C] = mine; values_of[C] = {} end
          values = values_of[C]
          at = #r - #tail + 1
        end
        mine[#mine + 1] = sub(r, 1, at - 1)  -- field_of(r): the first ':' is at `at`
        if counted then values[#mine] = v end
        if older then
          mine[#mine + 1] = r
          if counted then values[#mine] = v end
        end
      end
    end
  end
  call_chunked('HDEL', EXPIRY, done, 1)
  for C, mine in pairs(by_consumer) do
    if counted then  -- a raw element that came back: its count goes with it
      local kept = values_of[C]
      for n, value in ipairs(gather('HMGET', leases_of(C), mine, 1, #mine)) do
        if value then
          local _, e = record_of(mine[n], value, kept[n])
          forget_raw(e)
        end
      end
    end
    call_chunked('HDEL', leases_of(C), mine, 1)
  end
  tidy()
  return stale
end
local first, delay_ms, why = 8, 0, nil
if mode == 'requeue+' or mode == 'reject+' then
  first, delay_ms, why = 10, tonumber(ARGV[8]) or 0, ARGV[9]
  if why == '' then why = nil end
  mode = string.sub(mode, 1, -2)
end
local due = delay_ms > 0 and due_after(delay_ms) or nil
for i = #ARGV, first, -1 do  -- the first nacked is next out
  local r = ARGV[i]
  local v = redis.call('HGET', EXPIRY, r)
  local deadline = deadline_of(v)
  local e = release(r, v)
  if not e then
    stale[#stale + 1] = r
  elseif not deadline or deadline <= t then
    hand_back(e, true, 'max_deliveries')
    stale[#stale + 1] = r
  elseif mode == 'requeue' then
    hand_back(e, true, why or 'max_deliveries', due, r)
  else
    hand_back(e, false, why or 'rejected')
  end
end
tidy()
return stale
"""
)

#: ARGV[7] lease ms from now; ARGV[8] "set" (by hand: the deadline becomes now +
#: lease ms, earlier or later) or "renew" (the background renewal: the deadline
#: becomes now + lease ms only if that is later, so a longer extension by hand is
#: never cut short); ARGV[9...] receipts. Renews live leases and the heartbeat of
#: their consumers; returns the stale receipts (expired ones are handed back).
EXTEND = with_preamble(
    r"""
local t = now_ms()
local lease_ms = tonumber(ARGV[7])
local only_later = ARGV[8] == 'renew'
local new = t + lease_ms
local stale, renewed, seen = {}, {}, {}
each_deadline(9, #ARGV, function(r, deadline, v)
  if deadline and deadline > t then
    if not (only_later and deadline >= new) then
      renewed[#renewed + 1] = r
      renewed[#renewed + 1] = renewed_value(new, v)  -- the delivery time kept
      -- a later deadline keeps its group's score a lower bound; an earlier one does not
      if new < deadline then redis.call('ZADD', DEADLINES, new, r) end
    end
    seen[consumer_of(r)] = true
  else
    local e = release(r, v)
    if e then hand_back(e, true, 'max_deliveries') end
    stale[#stale + 1] = r
  end
end)
call_chunked('HSET', EXPIRY, renewed, 2)
for C in pairs(seen) do redis.call('ZADD', CONSUMERS, 'XX', t + HEARTBEAT, C) end
if #stale > 0 then tidy() end
return stale
"""
)

#: ARGV[7] at most this many lease groups and this many dead consumers per call;
#: ARGV[8] a live consumer whose orphans to hand back too ("" : none); ARGV[9] at
#: most this many leases looked at per call (a group or a dead consumer's leases
#: past it are left for the next call: a due group is split, a dead consumer stays
#: registered as dead until its lease hash is empty).
#: Also moves held messages that are due to the queue.
#: Returns {deliveries handed back, ms until the next lease group or held message is
#: due or -1 (0 when work was left for the next call), orphans, lease groups visited
#: (``limit`` when more may be due), held messages moved to the queue, ms until the next
#: held message is due or -1}.
RESCUE = with_preamble(
    r"""
local t = now_ms()
local limit, budget = tonumber(ARGV[7]), tonumber(ARGV[9])
local moved, more = 0, false
local scored = redis.call('ZRANGEBYSCORE', DEADLINES, '-inf', t, 'WITHSCORES', 'LIMIT', 0, limit)
local due, scores = {}, {}
for i = 1, #scored, 2 do
  due[#due + 1], scores[#scores + 1] = scored[i], scored[i + 1]
end
for i = #due, 1, -1 do  -- latest first: the earliest ends up next out
  if budget <= 0 then more = true; break end
  -- a group that fell due after the caller looked is left for the next rescue
  local colon = string.find(due[i], ':', 1, true)
  if not colon or declared(string.sub(due[i], colon + 1)) then
  local group = due[i]
  local receipts = group_receipts(group)
  local from = 1
  if #receipts > budget then
    -- Look at the group's latest `budget` receipts now; the earlier ones stay a
    -- group of their own, with the score the whole group had (still a lower bound).
    from = #receipts - budget + 1
    local head, rest = split_group(group, from - 1)
    if head then
      redis.call('ZADD', DEADLINES, scores[i], head)
      redis.call('ZREM', DEADLINES, group)
      group = rest
      more = true
    else
      from = 1
    end
  end
  budget = budget - (#receipts - from + 1)
  local found = gather('HMGET', EXPIRY, receipts, from, #receipts)
  local earliest
  for j = #receipts, from, -1 do
    local deadline = deadline_of(found[j - from + 1])
    if deadline and deadline <= t then
      local e = release(receipts[j], found[j - from + 1])
      if e then
        hand_back(e, true, 'max_deliveries')
        moved = moved + 1
      end
    elseif deadline and (not earliest or deadline < earliest) then
      earliest = deadline
    end
  end
  if earliest then
    redis.call('ZADD', DEADLINES, earliest, group)
  else
    redis.call('ZREM', DEADLINES, group)
  end
  end
end
-- a receipt orders deliveries by time, then by sequence number (a longer one is later)
local function later(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  if #a[2] ~= #b[2] then return #a[2] > #b[2] end
  return a[2] > b[2]
end
local dead = redis.call('ZRANGEBYSCORE', CONSUMERS, '-inf', t, 'LIMIT', 0, limit)
for _, C in ipairs(dead) do
  if budget <= 0 then more = true; break end
  -- a consumer that died after the caller looked is left for the next rescue
  if declared(C) then
  local proc, leases = proc_of(C), leases_of(C)
  -- moved but never leased: never handed to the application, no attempt
  for _, e in ipairs(orphans(C)) do
    redis.call('RPUSH', QUEUE, e)
    moved = moved + 1
  end
  redis.call('DEL', proc)
  local held, fields, values, receipts = {}, {}, {}, {}
  if redis.call('HLEN', leases) <= budget then
    local records = redis.call('HGETALL', leases)
    for j = 1, #records, 2 do
      fields[#fields + 1] = records[j]
      values[#values + 1] = records[j + 1]
    end
    redis.call('ZREM', CONSUMERS, C)
  else  -- some now, the rest by the next calls: it stays registered as dead
    local names = redis.call('HKEYS', leases)  -- cheap beside handing them back
    fields = {unpack(names, 1, budget)}
    values = redis.call('HMGET', leases, unpack(fields))
    more = true
  end
  for j, f in ipairs(fields) do receipts[j] = receipt_of(f, C) end
  local expiry = gather('HMGET', EXPIRY, receipts, 1, #receipts)
  for j, r in ipairs(receipts) do
    local delivered, e = record_of(fields[j], values[j], expiry[j])
    held[#held + 1] = {delivered, r, e}
  end
  budget = budget - #receipts
  call_chunked('HDEL', EXPIRY, receipts, 1)
  call_chunked('HDEL', leases, fields, 1)
  table.sort(held, later)
  for _, lease in ipairs(held) do  -- newest first: the oldest ends up next out
    hand_back(lease[3], true, 'max_deliveries')
    moved = moved + 1
  end
  end
end
local reconciled = 0
if ARGV[8] ~= '' then
  for _, e in ipairs(orphans(ARGV[8])) do
    redis.call('LREM', proc_of(ARGV[8]), 1, e)
    redis.call('RPUSH', QUEUE, e)
    reconciled = reconciled + 1
  end
end
tidy()
local released = release_due(t, limit)
local held_wait = next_due_wait(t)
local wait = held_wait
local next_lease = redis.call('ZRANGE', DEADLINES, 0, 0, 'WITHSCORES')
if next_lease[2] then
  local lease_wait = math.max(tonumber(next_lease[2]) - t, 0)
  if wait < 0 or lease_wait < wait then wait = lease_wait end
end
if more then wait = 0 end
return {moved, wait, reconciled, more and limit or #due, released, held_wait}
"""
)

#: Returns {queue length, dead letters, server ms, in flight, oldest delivery ms or
#: -1, consumers, then per consumer: name, heartbeat deadline or -1, processing
#: length, leases; then the number of held messages; last, the next element to be
#: delivered (the queue's tail), or false}.
INSPECT = with_preamble(
    r"""
local t = now_ms()
local names, order = {}, {}
local registered = redis.call('ZRANGE', CONSUMERS, 0, -1, 'WITHSCORES')
for i = 1, #registered, 2 do
  names[registered[i]] = tonumber(registered[i + 1])
  order[#order + 1] = registered[i]
end
for _, r in ipairs(redis.call('HKEYS', EXPIRY)) do
  local C = consumer_of(r)
  if names[C] == nil then names[C] = -1; order[#order + 1] = C end
end
local oldest = -1
local out = {redis.call('LLEN', QUEUE), redis.call('LLEN', DLQ), t,
             redis.call('HLEN', EXPIRY), 0, #order}
for _, C in ipairs(order) do
  -- a consumer that appeared after the caller looked is counted by the next inspect
  local proc, leases = 0, 0
  if declared(C) then
    local fields, receipts = redis.call('HKEYS', leases_of(C)), {}
    for j, f in ipairs(fields) do receipts[j] = receipt_of(f, C) end
    local expiry = gather('HMGET', EXPIRY, receipts, 1, #receipts)
    for j, f in ipairs(fields) do
      local delivered = delivered_of(expiry[j])
      if not delivered then  -- maybe in the record (see record_of): read it
        delivered = record_of(f, redis.call('HGET', leases_of(C), f), expiry[j])
      end
      if oldest < 0 or delivered < oldest then oldest = delivered end
    end
    proc, leases = redis.call('LLEN', proc_of(C)), #fields
  end
  out[#out + 1] = C
  out[#out + 1] = names[C]
  out[#out + 1] = proc
  out[#out + 1] = leases
end
out[5] = oldest
out[#out + 1] = redis.call('ZCARD', SCHEDULED)
out[#out + 1] = redis.call('LINDEX', QUEUE, -1)
return out
"""
)
