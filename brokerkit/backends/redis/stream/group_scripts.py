"""The Lua scripts that manage a redis+stream group rather than move its messages:
a member joining (the group's lease length), purging a topic, counting what follows
an id, removing idle members (their text: registered and run by :mod:`.calls_async`).
The checks they share with the messaging scripts are in :mod:`.scripts`."""

from __future__ import annotations

from brokerkit.backends.redis.stream.scripts import _CHECKS

__all__ = ["COUNT_AFTER", "JOIN", "PURGE", "PURGE_STEP", "REMOVE_IDLE"]

# KEYS: lease-length hash.  ARGV: group, this member's lease length in ms.
# Raises the group's lease length to this member's; returns the group's.
JOIN = (
    _CHECKS
    + r"""
local mine = tonumber(ARGV[2])
local held = lease_length(KEYS[1], ARGV[1], 0)
if mine > held then
  redis.call('HSET', KEYS[1], ARGV[1], mine)
  return mine
end
return held
"""
)

# KEYS: stream, the topic's scheduled ZSET.  Returns {delayed publishes removed, cut}.
# The first of a purge's calls (see :mod:`.purge_async`): drops the delayed publishes
# and moves every group to the end, atomically (a DEL, as the documented ACL allows:
# a set of very many delayed publishes takes as long to free); the cut is the
# stream's last entry's id ('' when it has none), and PURGE_STEP calls then drop the
# entries at or below it that no group holds.
PURGE = r"""
local key = KEYS[1]
local scheduled = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', key) == 0 then return {scheduled, ''} end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  for i = 1, #g, 2 do
    if g[i] == 'name' then redis.call('XGROUP', 'SETID', key, g[i + 1], '$') end
  end
end
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if #last == 0 then return {scheduled, ''} end
return {scheduled, last[1][1]}
"""

# KEYS: stream.  ARGV: cursor, cut, most entries, most bytes, most entries freed
# unread, the size of a small entry, the most entries a probe's LIMIT names, the most
# entries a trimming step reads.
# Returns {entries removed, next cursor ('' once nothing at or below the cut is left)}.
# One bounded step of a purge: removes entries at or below the cut that no group
# holds now (a group's pending entries, its delayed retries among them, are asked of
# every group in this call), never one above it. It reads entries one an XRANGE (the
# size of the next is unknown until it is read) and stops once their fields come to
# `most bytes`: so it copies at most that, plus the one entry that crosses it.
# While the cursor is '-', the entries are the stream's first, below the cut and
# below every entry held, dropped from the head a radix-tree node at a time, each
# node seen by its first entry (read; at most `heads` of them). A big one (`small`
# bytes or more: past Redis's stream-node-max-bytes, 4 KB by default, so a node of
# its own) is removed as read: the entries read so, with an approximate XTRIM MINID
# just above the last (the whole nodes they fill) and an XDEL of any left. A small
# one's node (a few KB at most) goes unread, by an approximate XTRIM MINID LIMIT k,
# which frees the head node only if it has k entries or fewer, and the nodes after it
# only while the count stays within k. k rises from one that freed nothing (a node of
# more than k) toward the size of the node before, by at most `most unread` past the
# least the node may hold: a probe frees at most that many entries past its node,
# unread, and the step stops once its probes may have. A node no probe up to
# `widest` frees (it has more, or reaches an entry held) is removed as read. Once
# nothing is left below, the next cursor is '0-0'. Otherwise the entries read (at
# most `most`) come after the cursor, each group's pending entries in their id range
# are asked (at most `most`: a group that has more there ends the step at the last
# it named), and the unheld ones XDELed; the next cursor is the last id handled.
PURGE_STEP = r"""
local key, cursor, cut = KEYS[1], ARGV[1], ARGV[2]
local most, bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local spare, small, widest = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local heads = tonumber(ARGV[8])
if redis.call('EXISTS', key) == 0 then return {0, ''} end
local function lower(a, b)  -- ids as text: their parts may not fit a Lua number
  local da, db = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  local pa, pb = {string.sub(a, 1, da - 1), string.sub(a, da + 1)},
    {string.sub(b, 1, db - 1), string.sub(b, db + 1)}
  for i = 1, 2 do
    if pa[i] ~= pb[i] then
      if #pa[i] ~= #pb[i] then return #pa[i] < #pb[i] end
      return pa[i] < pb[i]
    end
  end
  return false
end
local function above(id)  -- the least id above id (one that is below another)
  local function plus(n)
    local i = #n
    while i > 0 and string.sub(n, i, i) == '9' do i = i - 1 end
    if i == 0 then return '1' .. string.rep('0', #n) end
    return string.sub(n, 1, i - 1) .. string.char(string.byte(n, i) + 1) .. string.rep('0', #n - i)
  end
  local dash = string.find(id, '-', 1, true)
  local ms, seq = string.sub(id, 1, dash - 1), string.sub(id, dash + 1)
  if seq == '18446744073709551615' then return plus(ms) .. '-0' end
  return ms .. '-' .. plus(seq)
end
local function read(from, to)
  local ids, size = {}, 0
  while #ids < most and size < bytes do
    local e = redis.call('XRANGE', key, from, to, 'COUNT', 1)[1]
    if not e then break end
    ids[#ids + 1] = e[1]
    for _, v in ipairs(e[2]) do size = size + #v end
    from = '(' .. e[1]
  end
  return ids
end
local groups = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local name, pending
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'pending' then pending = g[i + 1] end
  end
  if pending > 0 then groups[#groups + 1] = name end
end
if cursor == '-' then
  local below = cut
  for _, name in ipairs(groups) do
    local first = redis.call('XPENDING', key, name, '-', cut, 1)
    if #first > 0 and lower(first[1][1], below) then below = first[1][1] end
  end
  local removed, reads, copied, unread, guess, probing = 0, 0, 0, 0, 0, true
  local run, from = {}, '-'  -- entries read, to remove as read; where to read on
  local function drop_run()  -- the whole nodes they fill, then any left
    if #run == 0 then return end
    local gone = redis.call('XTRIM', key, 'MINID', '~', above(run[#run]), 'LIMIT', #run)
    if gone < #run then gone = gone + redis.call('XDEL', key, unpack(run, gone + 1)) end
    removed, run, from = removed + gone, {}, '-'
  end
  while reads < heads and copied < bytes and unread < spare do
    local e = redis.call('XRANGE', key, from, '(' .. below, 'COUNT', 1)[1]
    if not e then
      drop_run()
      return {removed, '0-0'}
    end
    local size = 0
    for _, v in ipairs(e[2]) do size = size + #v end
    reads, copied = reads + 1, copied + size
    local gone = 0
    if size < small and probing then
      drop_run()  -- e is the first entry left
      local least = 0  -- the node holds more than `least` entries
      local k = math.max(1, math.min(guess - 1, 1 + spare))
      while true do
        gone = redis.call('XTRIM', key, 'MINID', '~', below, 'LIMIT', k)
        if gone > 0 or k >= widest then break end
        least = k
        if guess - 1 > least then k = guess - 1
        elseif guess > least then k = guess
        else k = 2 * least end
        k = math.min(k, least + 1 + spare, widest)
      end
      if gone > 0 then
        removed, unread, guess = removed + gone, unread + gone - least - 1, gone
      else
        probing = false
      end
    end
    if gone == 0 then run[#run + 1], from = e[1], '(' .. e[1] end
  end
  drop_run()
  return {removed, '-'}
end
local ids = read('(' .. cursor, cut)
if #ids == 0 then return {0, ''} end
local last, held = ids[#ids], {}
for _, name in ipairs(groups) do
  local pending = redis.call('XPENDING', key, name, ids[1], last, most)
  for _, p in ipairs(pending) do held[p[1]] = true end
  if #pending == most and lower(pending[most][1], last) then last = pending[most][1] end
end
local gone = {}
for _, id in ipairs(ids) do
  if not held[id] and not lower(last, id) then gone[#gone + 1] = id end
end
if #gone == 0 then return {0, last} end
return {redis.call('XDEL', key, unpack(gone)), last}
"""

# KEYS: stream.  ARGV: after id, most entries, most bytes.
# Returns {entries counted, the last id counted ('' once the stream's end was reached),
# the bytes of their fields}.
# One bounded step of counting the entries after an id (see inspect_async._count_after,
# which calls again from the last id counted): it reads entries one an XRANGE (the
# size of the next is unknown until it is read: a batch could copy any amount into
# Lua), at most `most` of them, and stops once their fields come to `most bytes`: so
# it copies at most that, plus the one entry that crosses it, whatever their sizes.
COUNT_AFTER = r"""
local key, from = KEYS[1], '(' .. ARGV[1]
local most, bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local n, size, last = 0, 0, ''
while n < most and size < bytes do
  local e = redis.call('XRANGE', key, from, '+', 'COUNT', 1)[1]
  if not e then return {n, '', size} end
  n, last, from = n + 1, e[1], '(' .. e[1]
  for _, v in ipairs(e[2]) do size = size + #v end
end
return {n, last, size}
"""

# KEYS: stream, the group's wake stream.  ARGV: group, idle ms, one consumer's name
# (or '' for any).
# Deletes the group's consumers idle that long or longer which hold nothing, and
# returns their names. A consumer that still holds entries is kept: XGROUP
# DELCONSUMER would drop its pending entries, and they would never be redelivered.
# A removed consumer leaves the wake stream's group too (what it holds there wakes
# nobody any more).
REMOVE_IDLE = (
    _CHECKS
    + r"""
local key, group, idle, only = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local removed = {}
local consumers = redis.pcall('XINFO', 'CONSUMERS', key, group)
local err = type(consumers) == 'table' and consumers.err
if err and string.sub(err, 1, 9) == 'WRONGTYPE' then
  return consumers  -- the error itself: the caller names the topic
end
consumers = checked(consumers, 'xinfo')
if not consumers then return removed end
for _, c in ipairs(consumers) do
  local name, pending, cidle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
    if c[i] == 'idle' then cidle = c[i + 1] end
  end
  if pending == 0 and cidle >= idle and (only == '' or only == name) then
    redis.call('XGROUP', 'DELCONSUMER', key, group, name)
    redis.pcall('XGROUP', 'DELCONSUMER', KEYS[2], group, name)
    removed[#removed + 1] = name
  end
end
return removed
"""
)

# KEYS: stream.  ARGV: max age ms, '~' or '='.  Returns how many entries XTRIM removed.
# Drops the entries older than the age, counted back from the server's clock (TIME),
# which gave the entries their ids: the caller's clock may be off by any amount.
TRIM_AGE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minid = string.format('%d', math.max(0, now - tonumber(ARGV[1])))
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2], minid)
"""
