"""The Lua that turns a redis+list element into a dead letter: it reads the element's
envelope as brokerkit's decoder (``_envelope.decode``) does, or gives a raw one an
envelope of its own, and adds the dead-letter headers. Part of the preamble (see
:mod:`.preamble`: a script carries these functions only when it calls them)."""

from __future__ import annotations

__all__ = ["DEAD_LETTERS"]

DEAD_LETTERS = r"""-- The header and payload of an element that brokerkit's decoder
-- (_envelope.decode) reads as an envelope: a JSON header with a non-empty string id,
-- a string content type, string headers and a numeric time. Anything else (nil) is a
-- raw element, whose id is its digest: the dead letter must carry the id the consumer
-- saw.
local function envelope(inner)
  if string.sub(inner, 1, 3) ~= 'BK1' then return nil end
  local nl = string.find(inner, '\n', 4, true)
  if not nl then return nil end
  local ok, h = pcall(cjson.decode, string.sub(inner, 4, nl - 1))
  if not ok or type(h) ~= 'table' then return nil end
  if type(h['id']) ~= 'string' or h['id'] == '' then return nil end
  if h['ct'] ~= nil and type(h['ct']) ~= 'string' then return nil end
  local ts = h['ts']
  if ts ~= nil and type(ts) ~= 'boolean' then
    -- a time that is no finite number (1e999, NaN): Python reads no envelope either,
    -- and a dead letter could not re-encode it (JSON has no infinity)
    local n = tonumber(ts)
    if not n or n ~= n or n == math.huge or n == -math.huge then return nil end
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

-- Whether s is UTF-8 as Python's strict decoder has it (no overlongs, no surrogates).
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
  -- back as the same double (a time the header holds as text stays as it was)
  local ts = header['ts']
  if type(ts) == 'number' then header['ts'] = nil end
  local json = cjson.encode(header)
  if type(ts) == 'number' then
    json = '{"ts":' .. string.format('%.17g', ts) .. ',' .. string.sub(json, 2)
  end
  redis.call('LPUSH', DLQ, 'BK1' .. json .. '\n' .. payload)
end

"""
