"""The Lua scripts that settle and extend a redis+list consumer's deliveries (see
:mod:`.scripts` for the keys, the arguments every script shares and the data model)."""

from __future__ import annotations

from brokerkit.backends.redis.list.preamble import with_preamble

__all__ = ["EXTEND", "SETTLE"]


#: ARGV[7] "ack", then per run of receipts of one batch: the batch ("<nonce>:<consumer>"),
#: how many, and each receipt's index in it (see :func:`.plan.batch_runs`; an
#: earlier version's receipt "<nonce><seq>:<consumer>" is read as index <seq> of batch
#: "<nonce>:<consumer>", which does not exist); or the batch and minus how many, for the
#: indexes 0 to how many - 1, in order (the whole of a fetch: one settled with no loop
#: when every delivery in it is still leased under the batch's lease). Or ARGV[7]
#: "requeue" or "reject", ARGV[8...] receipts in delivery order; or "return", the
#: same, for deliveries nobody saw (a closed subscription's buffer, a cancelled
#: receive): each element goes back to the queue's head as it was, no attempt counted,
#: never dead-lettered (one whose lease ran out goes back as a rescuer would hand it
#: back, counted, and is stale). Such elements are not counted in RETURNED, so the next
#: fetch takes them in a batch, unless one came back before (it goes out alone, as
#: after its nack) or a counted one waits beneath them (the count covers the head).
#: Or ARGV[7] "requeue+" / "reject+", ARGV[8] delay ms (0: none), ARGV[9] the dead
#: letter's reason ("": the usual one), ARGV[10...] receipts.
#: Returns the stale receipts (lease expired or taken away), which are left alone
#: (an expired one still in place is handed back, as a rescuer would).
#:
#: A mode ending in "!" ("ack!", "requeue+!"...) is a retry: the call was sent before
#: and its reply lost with the connection, so the attempt before may have settled these
#: deliveries. A receipt that no longer names a lease is then taken as settled by it,
#: not stale (it may instead have run out and been handed back by a rescuer: either way
#: nothing of it is left to do), and the script writes (a member added to DEADLINES
#: and removed), so that a replica wait after it covers what the lost attempt wrote.
SETTLE = with_preamble(
    r"""
local mode = ARGV[7]
local retry = string.sub(mode, -1) == '!'
if retry then mode = string.sub(mode, 1, -2) end
local t = now_ms()
local first, delay_ms, why = 8, 0, nil
if mode == 'requeue+' or mode == 'reject+' then
  first, delay_ms, why = 10, tonumber(ARGV[8]) or 0, ARGV[9]
  if why == '' then why = nil end
  mode = string.sub(mode, 1, -2)
end
-- Whether this call would dead-letter: a lease that ran out at max_deliveries (an
-- ack hands it back, as a rescuer would), or a nack's message (rejected, or at
-- max_deliveries). Read before anything is written: see dead_letters_ok.
local function would_dead_letter()
  if mode == 'ack' then return expired_would_die(8, t) end
  for i = first, #ARGV do
    local e, v = peek(ARGV[i])
    if e then
      local deadline = deadline_of(v)
      if not deadline or deadline <= t then
        if dies(e, true) then return true end
      elseif mode ~= 'return' and dies(e, mode == 'requeue') then
        return true
      end
    end
  end
  return false
end
if (MAX > 0 or mode == 'reject') and not dead_letters_ok() and would_dead_letter() then
  return refuse_dead_letters()
end
if retry then
  redis.call('ZADD', DEADLINES, 0, 'brokerkit:retry')
  redis.call('ZREM', DEADLINES, 'brokerkit:retry')
end
local stale = {}
if mode == 'ack' then
  local find, sub = string.find, string.sub
  local counted = redis.call('HLEN', ATTEMPTS) > 0
  local k = 8
  while k <= #ARGV do
    local name, nonce, C, n, whole, index
    name, nonce, C, n, whole, index, k = run_at(k)
    local tail = ':' .. C
    local flags = nonce ~= '' and flags_of(C, nonce)
    if flags then
      local list = need(BATCH_PREFIX .. name)
      local deadline = deadline_of(batch_value(name))  -- garbage: taken as expired
      local live_batch = deadline ~= nil and deadline > t
      if whole and live_batch and not counted and #flags == n and not find(flags, '[^0]') then
        set_flags(C, nonce, {}, n)  -- the usual ack: the whole fetch, all still leased
      else
        local marks, back, settling = {}, {}, 0
        for s = 0, n - 1 do
          local i = tonumber(index(s))
          local flag = i and not marks[i] and sub(flags, i + 1, i + 1)
          local live = nil  -- nil: not leased (settled, or no such delivery)
          if flag == '0' then
            live = live_batch
          elseif flag == '2' then
            local r = nonce .. index(s) .. tail
            local own = deadline_of(redis.call('HGET', EXPIRY, r))
            redis.call('HDEL', EXPIRY, r)
            live = own ~= nil and own > t
          end
          if live == nil then
            if not retry then stale[#stale + 1] = nonce .. index(s) .. tail end
          else
            marks[i] = '1'
            settling = settling + 1
            if not live then  -- expired: handed back, as a rescuer would
              back[#back + 1] = i
              stale[#stale + 1] = nonce .. index(s) .. tail
            elseif counted then  -- a raw element that came back: its count goes with it
              forget_raw(redis.call('LINDEX', list, i))
            end
          end
        end
        for _, i in ipairs(back) do
          local e = redis.call('LINDEX', list, i)
          if e then hand_back(e, true, 'max_deliveries') end
        end
        if settling > 0 then set_flags(C, nonce, marks, settling) end
      end
    else  -- leases an earlier version recorded, in the consumer's lease hash
      for s = 0, n - 1 do
        local r = nonce .. index(s) .. tail
        local e, v = release(r)
        local deadline = deadline_of(v)
        if deadline and deadline > t then
          if counted then forget_raw(e) end
        elseif e or not retry then  -- expired, or a record without its expiry value
          if e then hand_back(e, true, 'max_deliveries') end
          stale[#stale + 1] = r
        end
      end
    end
  end
  tidy()
  return stale
end
local due = delay_ms > 0 and due_after(delay_ms) or nil
-- RETURNED counts the elements at the queue's head: one returned goes uncounted (in a
-- batch, next time) only while no counted one is beneath it
local counting = mode ~= 'return' or (tonumber(redis.call('GET', RETURNED)) or 0) > 0
for i = #ARGV, first, -1 do  -- the first nacked is next out
  local r = ARGV[i]
  local e, v = release(r)
  local deadline = deadline_of(v)
  if not e then
    if not retry then stale[#stale + 1] = r end
  elseif not deadline or deadline <= t then
    hand_back(e, true, 'max_deliveries')
    stale[#stale + 1] = r
    counting = true
  elseif mode == 'return' then  -- nobody saw it: next out, as it was
    redis.call('RPUSH', QUEUE, e)
    -- one that came back before (wrapped, or raw with a count) still goes out alone
    if counting or wrapped_count(e) or (redis.call('HLEN', ATTEMPTS) > 0 and is_raw(e)
        and redis.call('HEXISTS', ATTEMPTS, redis.sha1hex(e)) == 1) then
      count_returned(1)
      counting = true
    end
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
#: never cut short); ARGV[9...] the receipts as SETTLE's ack names them: per run of
#: one batch, its name, how many and each index (or minus how many: the indexes from
#: 0). Renews live leases and the heartbeat of their consumers; returns the stale
#: receipts (expired ones are handed back).
#:
#: A receipt under its batch's value costs a look at its flag: the batch's value is
#: renewed once for all of them. A receipt with a value of its own (or an earlier
#: version's lease) is read and written apart, and a stale one released apart.
EXTEND = with_preamble(
    r"""
local t = now_ms()
local lease_ms = tonumber(ARGV[7])
local only_later = ARGV[8] == 'renew'
local new = t + lease_ms
local sub = string.sub
if MAX > 0 and not dead_letters_ok() and expired_would_die(9, t) then
  return refuse_dead_letters()
end
local stale, seen, batches, by_name = {}, {}, {}, {}
-- A lease that ran out (or none at all): handed back if it was one, reported stale
local function lapsed(r)
  local e = release(r)
  if e then hand_back(e, true, 'max_deliveries') end
  stale[#stale + 1] = r
end
-- A lease under a value v of its own (extended by hand before, or an earlier
-- version's) of consumer C
local function extend_own(r, v, C)
  local deadline = deadline_of(v)
  if not (deadline and deadline > t) then
    lapsed(r)
  else
    seen[C] = true
    if not (only_later and deadline >= new) then
      redis.call('HSET', EXPIRY, r, renewed_value(new, v))
      -- a later deadline keeps its group's score a lower bound; an earlier one does not
      if new < deadline then redis.call('ZADD', DEADLINES, new, r) end
    end
  end
end
local k = 9
while k <= #ARGV do
  local name, nonce, C, n, _, index
  name, nonce, C, n, _, index, k = run_at(k)
  local tail = ':' .. C
  if nonce ~= '' and flags_of(C, nonce) then
    local v = batch_value(name)
    local deadline = deadline_of(v)
    local live = deadline ~= nil and deadline > t
    for s = 0, n - 1 do
      local i = tonumber(index(s))
      -- read again each time: a hand-back changes the flags (and may drop the batch)
      local flag = i and sub(FLAGS[name] or '', i + 1, i + 1)
      if flag == '0' and live then
        seen[C] = true
        if only_later then
          -- the renewal: the batch's value renews every delivery it leases at once
          -- (the renewing broker holds them all)
          if deadline < new then
            v = renewed_value(new, v)  -- the delivery time kept
            redis.call('HSET', EXPIRY, name, v)
            VALUES[name], deadline = v, new
          end
        else  -- by hand: gathered by batch (below)
          local b = by_name[name]
          if not b then
            b = {C, nonce, {}, {}, deadline, v}
            by_name[name] = b
            batches[#batches + 1] = b
          end
          b[3][#b[3] + 1], b[4][#b[4] + 1] = index(s), i
        end
      elseif flag == '2' then
        local r = nonce .. index(s) .. tail
        extend_own(r, redis.call('HGET', EXPIRY, r), C)
      else  -- expired under the batch's value, settled, or no such delivery
        lapsed(nonce .. index(s) .. tail)
      end
    end
  else  -- leases an earlier version recorded, each under a value of its own
    for s = 0, n - 1 do
      local r = nonce .. index(s) .. tail
      extend_own(r, redis.call('HGET', EXPIRY, r), C)
    end
  end
end
-- By hand, a batch's deliveries get the new deadline: the batch's value when every
-- delivery it leases is named, else a value of their own (flag '2').
for _, b in ipairs(batches) do
  local C, nonce, named_at, indexes, deadline, v = b[1], b[2], b[3], b[4], b[5], b[6]
  local name, flags = nonce .. ':' .. C, flags_of(C, nonce)
  local _, under_batch = string.gsub(flags, '0', '')
  local named, distinct = {}, 0
  for _, i in ipairs(indexes) do
    if not named[i] then named[i] = '2'; distinct = distinct + 1 end
  end
  local value = renewed_value(new, v)
  if distinct == under_batch then
    redis.call('HSET', EXPIRY, name, value)
    VALUES[name] = value
    if new < deadline then
      redis.call('ZADD', DEADLINES, new, nonce .. '0+' .. #flags .. ':' .. C)
    end
  else
    local tail, own = ':' .. C, {}
    for n, at in ipairs(named_at) do own[2 * n - 1], own[2 * n] = nonce .. at .. tail, value end
    call_chunked('HSET', EXPIRY, own, 2)
    set_flags(C, nonce, named)
    if new < deadline then
      for n = 1, #own, 2 do redis.call('ZADD', DEADLINES, new, own[n]) end
    end
  end
end
for C in pairs(seen) do redis.call('ZADD', CONSUMERS, 'XX', t + HEARTBEAT, C) end
if #stale > 0 then tidy() end
return stale
"""
)
