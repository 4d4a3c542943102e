"""The Lua that turns a redis+list element into a dead letter: it reads the element's
envelope as brokerkit's decoder (``_envelope.decode``) does, or gives a raw one an
envelope of its own, and adds the dead-letter headers. Part of the preamble (see
:mod:`.preamble`: a script carries these functions only when it calls them)."""

from __future__ import annotations

from brokerkit.backends.redis._envelope import MAX_HEADER_DEPTH

__all__ = ["DEAD_LETTERS", "GUARD"]

DEAD_LETTERS = r"""-- Whether s is UTF-8 as Python's strict decoder has it (no overlongs, no
-- surrogates).
local function is_utf8(s)
  if not string.find(s, '[\128-\255]') then return true end
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, lo, hi = 1, 0x80, 0xBF
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else return false end
    for j = i + 1, i + len - 1 do
      local b = string.byte(s, j)
      if not b or b < lo or b > hi then return false end
      lo, hi = 0x80, 0xBF
    end
    i = i + len
  end
  return true
end

-- The header and payload of an element that brokerkit's decoder
-- (_envelope.decode) reads as an envelope: a UTF-8 JSON header object as Python's
-- json reads it (py_json, below) nested at most MAX_HEADER_DEPTH deep, with a
-- non-empty string id, a string content type, string headers and a time that is a
-- finite JSON number. Anything else (nil) is a raw element, whose id is
-- its digest: the dead letter must carry the id the consumer saw.
-- With verdict, only whether it is one (true or nil), without decoding a header in
-- brokerkit's own form: its fields are then known good (a time without an exponent,
-- at most 300 digits before its point, is finite).
local function envelope(inner, verdict)
  if string.sub(inner, 1, 3) ~= 'BK1' then return nil end
  local nl = string.find(inner, '\n', 4, true)
  if not nl then return nil end
  local text = string.sub(inner, 4, nl - 1)
  -- The header as brokerkit writes it (an id, a content type and a time, then perhaps
  -- headers, in printable ASCII without an escape): JSON that Python and cjson read
  -- alike, taken as it is; any other is read as Python's json would (is_utf8, then
  -- py_json), the readers made for it.
  local find, sub = string.find, string.sub
  local json, lone = nil, {}
  local _, e = find(text, '^{"id":"[]-~ -!#-[]+","ct":"[]-~ -!#-[]*","ts":%-?')
  local n = e and (select(2, find(text, '^0', e + 1)) or select(2, find(text, '^[1-9]%d*', e + 1)))
  if n and n - e <= 300 then  -- (an integer of more than 4300 digits is no number to Python)
    n = select(2, find(text, '^%.%d+', n + 1)) or n
    local exponent = select(2, find(text, '^[eE][-+]?%d+', n + 1))
    n = exponent or n
    local k = find(text, '^,"h":{', n + 1) and n + 7
    if n + 1 == #text and sub(text, -1) == '}' then
      json = text
    elseif k then
      if sub(text, k, k) ~= '}' then
        while k do
          local _, q = find(text, '^"[]-~ -!#-[]*":"[]-~ -!#-[]*"', k)
          local c = q and sub(text, q + 1, q + 1)
          if c == '}' then k = q + 1; break end
          k = c == ',' and q + 2 or nil
        end
      end
      if k and k + 1 == #text and sub(text, -1) == '}' then json = text end
    end
    if json and verdict and not exponent then return true end
  end
  if not json then
    if not is_utf8(text) then return nil end
    -- Where the JSON object that opens header h ends, as Python's json reads it
    -- (raw_decode from the first byte, then nothing but whitespace): its grammar of
    -- numbers, literals (NaN, Infinity, -Infinity too) and strings (no raw control
    -- character), where cjson takes hex numbers, leading zeros, '+' and raw controls. Then
    -- the object's text for cjson, each lone surrogate escape (which cjson refuses and
    -- Python reads) as U+FFFD, and the top-level keys (the last of each name) whose value
    -- holds a lone surrogate. nil when Python reads no object there.
    local function py_json(h)
      local find, sub = string.find, string.sub
      if sub(h, 1, 1) ~= '{' then return nil end
      local i, depth, expect = 1, 0, 'value'
      local closers, lone, lones, current = {}, {}, {}, nil
      while true do
        if depth > 0 then i = find(h, '[^ \t\r\n]', i) end
        if not i then return nil end
        local c = sub(h, i, i)
        if expect == 'next' then
          if c == ',' then
            expect = closers[depth] == '}' and 'key' or 'value'
            i = i + 1
          elseif c == closers[depth] then
            closers[depth], depth = nil, depth - 1
            if depth == 0 then break end
            i = i + 1
          else
            return nil
          end
        elseif expect == 'colon' then
          if c ~= ':' then return nil end
          expect, i = 'value', i + 1
        elseif c == '"' then  -- a string: a key or a value
          local j, has_lone = i + 1, false
          while true do
            local k = find(h, '["\\%z\1-\31]', j)
            if not k or sub(h, k, k) < ' ' then return nil end
            if sub(h, k, k) == '"' then j = k; break end
            local e = sub(h, k + 1, k + 1)
            if e == 'u' then
              local hex = sub(h, k + 2, k + 5)
              if not find(hex, '^%x%x%x%x$') then return nil end
              local cp = tonumber(hex, 16)
              if cp >= 0xD800 and cp <= 0xDBFF and find(h, '^\\u[dD][c-fC-F]%x%x', k + 6) then
                j = k + 12  -- a surrogate pair
              elseif cp >= 0xD800 and cp <= 0xDFFF then
                has_lone, j = true, k + 6
                lones[#lones + 1] = k
              else
                j = k + 6
              end
            elseif e ~= '' and find('"\\/bfnrt', e, 1, true) then
              j = k + 2
            else
              return nil
            end
          end
          if expect == 'key' and depth == 1 then
            local key = sub(h, i + 1, j - 1)
            if has_lone then
              key = false
            elseif find(key, '\\', 1, true) then
              key = cjson.decode(sub(h, i, j))
            end
            current = key
            if key then lone[key] = false end
          elseif has_lone and current then
            lone[current] = true
          end
          expect = expect == 'key' and 'colon' or 'next'
          i = j + 1
        elseif expect == 'key' then  -- no key after a comma (an empty object is seen below)
          return nil
        elseif c == '{' or c == '[' then
          depth = depth + 1
          if depth > MAX_HEADER_DEPTH then return nil end  -- no header (_envelope's bound)
          closers[depth] = c == '{' and '}' or ']'
          expect, i = c == '{' and 'key' or 'value', i + 1
          -- an empty one
          local k = find(h, '[^ \t\r\n]', i)
          if k and sub(h, k, k) == closers[depth] then expect, i = 'next', k end
        else  -- a number or a literal
          local _, e = find(h, '^-?0', i)
          if not e then _, e = find(h, '^-?[1-9]%d*', i) end
          if e then
            local _, f = find(h, '^%.%d+', e + 1)
            local _, g = find(h, '^[eE][-+]?%d+', (f or e) + 1)
            -- Python reads an integer of more than 4300 digits as no number
            if not f and not g and e - i + 1 - (c == '-' and 1 or 0) > 4300 then return nil end
            i = (g or f or e) + 1
          else
            _, e = find(h, '^-?Infinity', i)
            if not e then
              for _, word in ipairs({'true', 'false', 'null', 'NaN'}) do
                if sub(h, i, i + #word - 1) == word then e = i + #word - 1; break end
              end
            end
            if not e then return nil end
            i = e + 1
          end
          expect = 'next'
        end
      end
      local rest = sub(h, i + 1)
      if rest ~= '' then
        rest = string.gsub(rest, '[\t\n\v\f\r\28-\31 ]', '')
        -- and what Python's str.strip() takes beyond ASCII (the header is UTF-8 by then)
        for _, space in ipairs({'\194\133', '\194\160', '\225\154\128', '\226\128[\128-\138]',
            '\226\128\168', '\226\128\169', '\226\128\175', '\226\129\159', '\227\128\128'}) do
          rest = string.gsub(rest, space, '')
        end
        if rest ~= '' then return nil end
      end
      local text = sub(h, 1, i)
      if #lones > 0 then
        local parts, at = {}, 1
        for _, k in ipairs(lones) do
          parts[#parts + 1] = sub(text, at, k - 1)
          parts[#parts + 1] = '\\ufffd'
          at = k + 6
        end
        parts[#parts + 1] = sub(text, at)
        text = table.concat(parts)
      end
      return text, lone
    end

    json, lone = py_json(text)
    if not json then return nil end
  end
  -- Python checks these for lone surrogates (they could not be encoded again)
  if lone['id'] or lone['ct'] or lone['h'] then return nil end
  local ok, h = pcall(cjson.decode, json)
  if not ok or type(h) ~= 'table' then return nil end
  if type(h['id']) ~= 'string' or h['id'] == '' then return nil end
  if h['ct'] ~= nil and type(h['ct']) ~= 'string' then return nil end
  -- a time that is no finite JSON number (text, true, 1e999, NaN): Python reads no
  -- envelope either, and a dead letter could not re-encode it (JSON has no infinity)
  local ts = h['ts']
  if ts ~= nil and (type(ts) ~= 'number' or ts ~= ts or ts == math.huge or ts == -math.huge) then
    return nil
  end
  local hs = h['h']
  if type(hs) == 'table' then
    for k, v in pairs(hs) do
      if type(k) ~= 'string' or type(v) ~= 'string' then return nil end
    end
  elseif not (hs == nil or hs == cjson.null or hs == false or hs == 0 or hs == '') then
    return nil
  end
  return h, string.sub(inner, nl + 1)
end

local function dead_letter(inner, reason, deliveries)
  local header, payload = envelope(inner)
  if not header then
    -- a raw element another program wrote: give it an envelope to carry the headers,
    -- and the id and content type a consumer saw (as _envelope.raw_message has them)
    local ct = RAW_CT
    if ct == '' then
      if not is_utf8(inner) then ct = 'application/octet-stream'
      elseif pcall(cjson.decode, inner) then ct = 'application/json'
      else ct = 'text/plain; charset=utf-8' end
    end
    header = {id = 'raw-' .. string.sub(redis.sha1hex(inner), 1, 24), ct = ct, ts = 0}
    payload = inner
  end
  if type(header['h']) ~= 'table' then header['h'] = {} end
  header['h']['x-dead-letter-reason'] = reason
  header['h']['x-original-topic'] = TOPIC
  header['h']['x-deliveries'] = tostring(deliveries)
  -- cjson writes numbers to 14 significant digits: the time goes in as 17, which read
  -- back as the same double
  local ts = header['ts']
  if type(ts) == 'number' then header['ts'] = nil end
  local json = cjson.encode(header)
  if type(ts) == 'number' then
    json = '{"ts":' .. string.format('%.17g', ts) .. ',' .. string.sub(json, 2)
  end
  redis.call('LPUSH', DLQ, 'BK1' .. json .. '\n' .. payload)
end

""".replace("MAX_HEADER_DEPTH", str(MAX_HEADER_DEPTH))

#: The check a call that may dead-letter makes before it writes anything: Redis keeps
#: what a script wrote before an error, so a dead letter that fails on a dead-letter
#: key of another type (``LPUSH``'s WRONGTYPE) would leave the message taken from its
#: lease and put nowhere. Part of the preamble, after ``is_raw`` (which it calls).
GUARD = r"""-- Whether a dead letter can go to DLQ (no such key, or a list), asked once a call.
local function dead_letters_ok()
  if DLQ_KIND == nil then DLQ_KIND = redis.call('TYPE', DLQ)['ok'] end
  return DLQ_KIND == 'none' or DLQ_KIND == 'list'
end

-- The reply refusing the call, before it wrote anything: the dead-letter key holds
-- another type. Returned by the script's body (Redis 6.2 fails on an error() of a table).
local function refuse_dead_letters()
  return redis.error_reply('WRONGTYPE brokerkit: the dead-letter key ' .. DLQ .. ' holds a '
    .. DLQ_KIND .. ', not a list; nothing was changed')
end

-- Whether handing element e back (requeue: to be delivered again) dead-letters it, as
-- hand_back decides: rejected, or delivered max_deliveries times with this one.
local function dies(e, requeue)
  if not requeue then return true end
  if MAX == 0 then return false end
  local n = unwrap(e)
  if is_raw(e) then n = tonumber(redis.call('HGET', ATTEMPTS, redis.sha1hex(e)) or '0') or 0 end
  return n + 1 >= MAX
end

-- The element of a delivery's lease and the lease's expiry value, as release(receipt)
-- returns them, without writing anything.
local function peek(receipt)
  local value, kind, nonce, C, i = lease_of(receipt)
  if kind == 'settled' then return nil, nil end
  if kind ~= 'record' then
    return redis.call('LINDEX', need(BATCH_PREFIX .. nonce .. ':' .. C), i) or nil, value
  end
  local field, record = recorded_lease(receipt)
  if not record then return nil, value end
  local _, e = record_of(field, record, value)
  return e, value
end

-- Whether handing back the leases that ran out among the receipts named from ARGV[k]
-- on (runs of a batch, as SETTLE's ack and EXTEND name them) dead-letters one, at
-- server time t.
local function expired_would_die(k, t)
  while k <= #ARGV do
    local name, nonce, C, n, _, index
    name, nonce, C, n, _, index, k = run_at(k)
    local flags = nonce ~= '' and flags_of(C, nonce)
    for s = 0, n - 1 do
      local r = nonce .. index(s) .. ':' .. C
      local e, v
      if flags then
        local i = tonumber(index(s))
        local flag = i and string.sub(flags, i + 1, i + 1)
        if flag == '0' or flag == '2' then
          v = flag == '0' and batch_value(name) or redis.call('HGET', EXPIRY, r)
          e = redis.call('LINDEX', need(BATCH_PREFIX .. name), i)
        end
      else
        e, v = peek(r)
      end
      local deadline = deadline_of(v)
      if e and not (deadline and deadline > t) and dies(e, true) then return true end
    end
  end
  return false
end

"""
