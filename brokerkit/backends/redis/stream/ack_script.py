"""The ack script of redis+stream: one batch's ownership checked and acked on the
server, by its ids or, for one whole read batch, by its count (its text: registered
and run by :mod:`.calls_async`; the checks it shares with the messaging scripts are in
:mod:`.scripts`)."""

from __future__ import annotations

from brokerkit.backends.redis.stream.scripts import _HELPERS

__all__ = ["ACK", "COUNT_ACK_MEMBERS"]

# KEYS: stream, the group's delayed ZSET (written only on a retry, see mark_retry in
# .scripts).  ARGV: group, consumer, flags, low id, high id, then the ids, or
# (acked by count, below) how many there are.
# flags: delete-acked, retry, count ('1'/'0' each; count may be left out).
# Returns the ids that were not pending for this consumer (stale); by count, 1 when
# acked, 0 when the batch was not proved held, -1 when the group has more than
# COUNT_ACK_MEMBERS members (nothing was done either way: the caller sends the ids,
# and after -1 sends ids only). On a retry (the previous attempt's reply was lost
# with the connection), an id pending for nobody was acked by that attempt and is
# not stale, and the script writes (mark_retry) whatever is left to do, so that the
# replica wait after it covers what the lost attempt wrote.
#
# One XPENDING over [low, high], this consumer's entries only, finds what it holds;
# the caller passes the first and last id of the batch, which bound it when the
# deliveries are acked in the order they were read (the usual case). When the range
# lists exactly the ids, in their order, every one is held and they are acked as
# passed; otherwise an id the range does not list (outside it, cut at the limit, or
# not held) is checked alone. The owned ids are then acked with one XACK.
#
# By count: the caller sends the first and last id and the size of one whole batch
# of one XREADGROUP ... >, acked exactly as it was read (the deliveries that read
# returned, in their order). Such a read hands out every entry after the group's
# position, in order, and later entries get higher ids, so every live entry of the
# stream from low to high is in the batch. When this consumer holds as many entries
# as the batch has (XPENDING's summary, one line per consumer) and none below low or
# above high (two XPENDING ... COUNT 1), what it holds is the batch: the consumer is
# deleted with its pending entries (XGROUP DELCONSUMER, which acks exactly them) and
# made again at once (XGROUP CREATECONSUMER; its idle time starts again, as after a
# read). Otherwise (a member claimed an entry of the batch, this consumer holds
# another one) nothing is done and the caller sends the ids. No ids cross the wire or
# come into Lua, and no range is listed (measured on Redis 7.0, a batch of 100:
# ~30 us of server time by count, ~90 us with the ids).
# Whatever the proof concludes, DELCONSUMER acks only this consumer's own pending
# entries: an entry another member claimed keeps its delivery. The proof only keeps
# it from acking one this consumer holds outside the batch. One corner gets past it:
# an entry deleted while this consumer held it (XDEL leaves it pending) lies inside
# [low, high] once the group was moved back (XGROUP SETID) and read past it; if another
# member also claimed an entry of the batch, the count matches. The deleted entry is
# then acked with the batch (it is gone: nothing is lost, though its own delivery's
# ack finds it stale), and the claimed entry is not reported stale (its new owner's
# delivery is untouched).
#: The most members a group may have for its acks by count: the proof's XPENDING
#: summary walks the members holding something (measured on Redis 7.0, a batch of
#: 100: by count ~26 us with none besides, ~58 us with 100 others holding, ~400 us
#: with 1,000; by ids ~90-110 us whatever the group).
COUNT_ACK_MEMBERS = 64

ACK = (
    _HELPERS
    + f"local COUNT_ACK_MEMBERS = {COUNT_ACK_MEMBERS}\n"
    + r"""
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local delete, retry = string.sub(ARGV[3], 1, 1) == '1', string.sub(ARGV[3], 2, 2) == '1'
if retry then mark_retry(KEYS[2]) end

if string.sub(ARGV[3], 3, 3) == '1' then
  -- by count: `consumer` holds ARGV[6] entries, none outside [low, high]. The
  -- summary lists every member holding something: in a big group it costs more
  -- than the ids' path, and the caller is told to send ids from now on (-1).
  local info = checked(redis.pcall('XINFO', 'GROUPS', key), 'xinfo') or {}
  for _, g in ipairs(info) do
    for i = 1, #g - 1, 2 do
      if g[i] == 'name' and g[i + 1] ~= group then break end
      if g[i] == 'consumers' and g[i + 1] > COUNT_ACK_MEMBERS then return -1 end
    end
  end
  local summary = checked(redis.pcall('XPENDING', key, group), 'xpending')
  local held = 0
  for _, c in ipairs(summary and summary[4] or {}) do
    if c[1] == consumer then held = tonumber(c[2]) end
  end
  if held ~= tonumber(ARGV[6]) then return 0 end
  -- an error (such as an id at the very end of the id space) counts as held
  for _, bounds in ipairs({{'-', '(' .. ARGV[4]}, {'(' .. ARGV[5], '+'}}) do
    local r = redis.pcall('XPENDING', key, group, bounds[1], bounds[2], 1, consumer)
    if type(r) ~= 'table' or r.err or #r > 0 then return 0 end
  end
  redis.call('XGROUP', 'DELCONSUMER', key, group, consumer)
  redis.call('XGROUP', 'CREATECONSUMER', key, group, consumer)
  return 1
end

local n = #ARGV
local range = checked(redis.pcall('XPENDING', key, group, ARGV[4], ARGV[5], 2 * (n - 5) + 100,
                                  consumer), 'xpending') or {}
local stale, acked, first, last = {}, ARGV, 6, n
local exact = #range == n - 5
for i = 1, exact and #range or 0 do
  if range[i][1] ~= ARGV[i + 5] then exact = false break end
end
if not exact then
  local mine = {}
  for i = 1, #range do mine[range[i][1]] = true end
  acked, first = {}, 1
  for i = 6, n do
    local id = ARGV[i]
    if mine[id] or owned(key, group, consumer, id) then
      acked[#acked + 1] = id
    elseif not (retry and #redis.call('XPENDING', key, group, id, id, 1) == 0) then
      stale[#stale + 1] = id
    end
  end
  last = #acked
end
for i = first, last, 1000 do
  redis.call('XACK', key, group, unpack(acked, i, math.min(i + 999, last)))
end
if delete and last >= first then
  local groups = redis.call('XINFO', 'GROUPS', key)
  for i = first, last do
    if settled_everywhere(key, groups, acked[i]) then redis.call('XDEL', key, acked[i]) end
  end
end
return stale
"""
)
