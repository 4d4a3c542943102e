"""The unfolding RESCUE (:mod:`.upkeep`) does of a lease group that claims far more
receipts than its consumer's lease hash holds (the leases an earlier version recorded):
``unfolds`` (whether it takes a group) and ``unfold``, with ``kth_largest`` and the
bounds ``UNFOLD_OVER`` and ``UNFOLD_READ`` (which ``recorded_leases`` reads too). Lua
text placed in RESCUE's body, after the locals and functions it uses (``GIVEN``,
``GIVEN_OF``, ``GIVEN_GROUP``, ``GIVEN_CUT``, ``UNREAD``, ``group_parts``, ``flags_of``,
``leases_of``, ``receipt_of``, ``split_group``, ``call_chunked``...)."""

from __future__ import annotations

__all__ = ["UNFOLD"]

UNFOLD = r"""
-- The k-th largest of the numbers in a (1 <= k <= #a), which it reorders: a selection
-- (quickselect, a median of three for pivot), in time linear in #a on average.
local function kth_largest(a, k)
  local lo, hi = 1, #a
  while lo < hi do
    local x, y, z = a[lo], a[math.floor((lo + hi) / 2)], a[hi]
    local p = math.max(math.min(x, y), math.min(math.max(x, y), z))
    local i, j = lo, hi
    while i <= j do
      while a[i] > p do i = i + 1 end
      while a[j] < p do j = j - 1 end
      if i <= j then
        a[i], a[j] = a[j], a[i]
        i, j = i + 1, j - 1
      end
    end
    if k <= j then hi = j elseif k >= i then lo = i else return a[k] end
  end
  return a[lo]
end
-- A known group g of no batch that claims far more receipts than its consumer's lease
-- hash (the leases an earlier version recorded) holds, more than UNFOLD_OVER times as
-- many: another program's, or broken (it may claim 10^13). Walked `budget` receipts a
-- call it would never be done, and every consumer's maintenance would call again
-- before its next fetch, for ever (a group claiming at most that many is walked: a
-- bounded number of calls, each of bounded work). Instead the receipts of the latest
-- `most` leases of the hash that fall in it (more only for an index recorded under both
-- field forms) become groups of one with g's score (still a lower bound), read by the
-- next call, and g shrinks to the receipts below them, gone when none is left: each
-- call takes at least one lease out of it and writes at most that many members, and
-- once g claims no more than UNFOLD_OVER times the leases held, it is walked. The hash
-- is read whole (the ACL grants no command that reads part of one), its fields' names
-- only, here only while it holds at most UNFOLD_READ of them (a read of 10,000 took 6
-- ms of server time); past that the call names C and g in its reply, and the caller
-- reads the names outside any script and gives the latest `most` of g's, and the index
-- below them, to its next call (ARGV[A...]). Returns how many members it wrote (0 for
-- a hash left to the caller), or nil when g is no such group.
local UNFOLD_OVER, UNFOLD_READ = 4, 4000
-- Whether unfold takes g: its parts, its consumer, lease hash and how many that holds
local function unfolds(g)
  local nonce, first, n, tail = group_parts(g)
  if not nonce then return nil end
  local C = string.sub(tail, 2)
  if flags_of(C, nonce) then return nil end
  local leases = leases_of(C)
  local held = redis.call('HLEN', leases)
  if held == 0 or n <= UNFOLD_OVER * held then return nil end
  return nonce, first, n, tail, C, leases, held
end
local function unfold(g, score, most)
  local nonce, first, n, tail, C, leases, held = unfolds(g)
  if not nonce then return nil end
  local names, cut = GIVEN, first  -- the members are the leases from index cut on
  if GIVEN_OF ~= C or GIVEN_GROUP ~= g then
    if held > UNFOLD_READ then
      UNREAD = UNREAD or {C, g}
      return 0
    end
    names = redis.call('HKEYS', leases)
  elseif GIVEN_CUT and GIVEN_CUT > first and GIVEN_CUT < first + n then
    cut = GIVEN_CUT
  end
  local indexes, fields, found = {}, {}, 0
  local sub, find, width, last = string.sub, string.find, #nonce, first + n
  local whole = #tail - 1
  for _, f in ipairs(names) do
    -- '<nonce><index>' (the hash names C) or '<nonce><index>:<C>'
    if find(f, nonce, 1, true) == 1 then
      local colon, i = find(f, ':', width + 1, true), nil
      if not colon then
        i = tonumber(sub(f, width + 1))
      elseif colon + whole == #f and find(f, tail, colon, true) == colon then
        i = tonumber(sub(f, width + 1, colon - 1))
      end
      if i and i >= first and i < last and i == math.floor(i) then
        found = found + 1
        indexes[found], fields[found] = i, f
      end
    end
  end
  if found > most then
    local chosen = {}
    for j = 1, found do chosen[j] = indexes[j] end
    cut = math.max(cut, kth_largest(chosen, most))
  end
  local members, m = {}, 0
  for j = 1, found do
    if indexes[j] >= cut then
      members[m + 1], members[m + 2] = score, receipt_of(fields[j], C)
      m = m + 2
    end
  end
  redis.call('ZREM', DEADLINES, g)
  if cut > first then redis.call('ZADD', DEADLINES, score, (split_group(g, cut - first))) end
  if m > 0 then call_chunked('ZADD', DEADLINES, members, 2) end
  return m / 2
end"""
