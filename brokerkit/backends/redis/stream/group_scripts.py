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

# KEYS: stream.  ARGV: cursor, cut, most entries, most bytes.
# Returns {entries removed, next cursor ('' once nothing at or below the cut is left)}.
# One bounded step of a purge: removes entries at or below the cut that no group
# holds now (a group's pending entries, its delayed retries among them, are asked of
# every group in this call), never one above it. It reads entries one an XRANGE (the
# size of the next is unknown until it is read), at most `most` of them, and stops
# once their fields come to `most bytes`: so it copies at most that, plus the one
# entry that crosses it, whatever their sizes; it removes only entries it read.
# While the cursor is '-', the entries read are the stream's first, below the cut
# and below every entry held: an approximate XTRIM MINID just above the last of them
# drops the whole radix-tree nodes they fill, an XDEL the rest; once none is left
# there, the next cursor is '0-0'. Otherwise the entries read come after the cursor,
# each group's pending entries in their id range are asked (at most `most`: a group
# that has more there ends the step at the last it named), and the unheld ones
# XDELed; the next cursor is the last id handled.
PURGE_STEP = r"""
local key, cursor, cut = KEYS[1], ARGV[1], ARGV[2]
local most, bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
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
  local ids = read('-', '(' .. below)
  if #ids == 0 then return {0, '0-0'} end
  -- only whole nodes of the entries read (every entry below the id above the last)
  local removed = redis.call('XTRIM', key, 'MINID', '~', above(ids[#ids]), 'LIMIT', #ids)
  if removed < #ids then removed = removed + redis.call('XDEL', key, unpack(ids, removed + 1)) end
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
