"""How a message is written into a Redis value, and read back.

A framed envelope is ``BK1`` + a JSON header line + the payload bytes, so that
``redis-cli`` shows readable metadata and the body is never re-encoded::

    BK1{"id":"...","ct":"application/json","ts":1700000000.0,"h":{...}}\n<payload>

Streams store the same facts in a header field ``bk1`` (one line each) and the payload
in a field ``body`` (:mod:`._stream_fields`, which shares this module's checks).
A value that is not an envelope is a *raw* payload that another program wrote.

Decoding is total: :func:`decode` and :func:`raw_message`
never raise, whatever bytes they are given, so that one hostile value cannot jam a
topic. A header that does not parse as one brokerkit wrote (not UTF-8, not JSON,
nested deeper than :data:`MAX_HEADER_DEPTH`, a ``ts`` that is not a finite JSON
number, headers that are not str to str...) makes the value a raw message: its payload is the whole
value and its content type is guessed (JSON only if Python's ``json`` reads it,
else text if UTF-8, else ``application/octet-stream``). :attr:`Message.body` may
still raise :class:`~brokerkit.SerializationError` for a payload that does not
decode as its content type says; :attr:`Message.payload` always holds the bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from brokerkit._message import Message

__all__ = [
    "MAGIC",
    "MAX_HEADER_DEPTH",
    "decode",
    "decode_many",
    "encode",
    "json_time",
    "raw_message",
]

MAGIC = b"BK1"
_HEADER_DECODER = json.JSONDecoder()

#: How deeply a JSON header may nest, the header object counting as one level (its
#: ``h`` as two): a deeper one is no brokerkit header, so that every reader (this
#: module, redis+list's Lua, another language's) judges it alike, whatever its own
#: stack or parser allows (docs/wire-format.md).
MAX_HEADER_DEPTH = 32
#: A JSON string (or the rest of the text after an unclosed quote: a match never fails,
#: so a text of many quotes costs no more than one pass), and what is no bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _too_deep(text: str) -> bool:
    """Whether the JSON ``text`` nests deeper than :data:`MAX_HEADER_DEPTH` (for text
    that is no JSON, the answer does not matter: it is no header either way)."""
    if text.count("{") + text.count("[") <= MAX_HEADER_DEPTH:
        return False
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        if bracket in "{[":
            depth += 1
            if depth > MAX_HEADER_DEPTH:
                return True
        else:
            depth -= 1
    return False


_ESCAPED_CONTENT_TYPES: dict[str, str] = {}


def _json_text(text: str) -> str:
    escaped = _ESCAPED_CONTENT_TYPES.get(text)
    if escaped is None:
        escaped = json.dumps(text, ensure_ascii=False)
        if len(_ESCAPED_CONTENT_TYPES) < 256:
            _ESCAPED_CONTENT_TYPES[text] = escaped
    return escaped


def encode(message: Message) -> bytes:
    """One bytes value holding the whole message."""
    # Built by hand: this runs once per published message, and json.dumps of a dict
    # costs several times as much. brokerkit's ids are hex and need no escaping; an id
    # read from another program's header may.
    message_id = message.id
    plain = message_id.isascii() and message_id.isprintable()
    if plain and '"' not in message_id and "\\" not in message_id:
        id_json = f'"{message_id}"'
    else:
        id_json = json.dumps(message_id, ensure_ascii=False)
    headers = (
        ',"h":' + json.dumps(dict(message.headers), ensure_ascii=False, separators=(",", ":"))
        if message.headers
        else ""
    )
    header = (
        f'{{"id":{id_json},"ct":{_json_text(message.content_type)},'
        f'"ts":{message.published_at!r}{headers}}}'
    )
    return MAGIC + header.encode() + b"\n" + message.payload


#: The header :func:`encode` writes, with a hex id and a content type that needs no
#: JSON escape: read without the JSON decoder (the headers, when the last group says
#: they follow, by its scanner alone). The number is JSON's grammar; no raw control
#: character, quote or backslash may stand in the content type (JSON would refuse
#: the first and escape the others).
_PLAIN_HEADER = re.compile(
    rb'BK1\{"id":"([0-9a-f]+)","ct":"([^"\\\x00-\x1f]*)",'
    rb'"ts":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?:\}\n|(,"h":))'
)


#: The time text :func:`decode` converted last, and its value.
_last_time: tuple[bytes, float] = (b"", 0.0)
_new = object.__new__


def decode(topic: str, data: bytes, raw_content_type: str | None = None) -> Message:
    """The message in ``data``. Never raises: a value without the envelope, or with
    one that does not parse, is a raw payload (another program wrote it)."""
    plain = _PLAIN_HEADER.match(data) if type(data) is bytes else None
    if plain is not None:
        message = _plain_message(topic, data, plain)
        if message is not None:
            return message
    if data.startswith(MAGIC):
        end = data.find(b"\n", len(MAGIC))
        if end != -1:
            read = _from_json_header(topic, data[len(MAGIC) : end], data[end + 1 :])
            if read is not None:
                return read
    return raw_message(topic, data, raw_content_type)


def _plain_message(topic: str, data: bytes, plain: re.Match[bytes]) -> Message | None:
    """The message of a header :data:`_PLAIN_HEADER` matched, read as the JSON decoder
    would read it (without calls: a consumer decodes every element it fetches); None
    for a content type that is not UTF-8, an infinite time or headers that the scanner
    alone cannot judge (see :func:`_headers_at`): the general path reads those."""
    global _last_time
    message_id, content_type, ts, more = plain.groups()
    # publish_many gives a batch one time: the text last converted is kept (one
    # tuple, replaced whole, so that threads decoding at once read a pair).
    last = _last_time
    if last[0] == ts:
        published_at = last[1]
    else:
        published_at = float(ts)
        _last_time = (ts, published_at)
    try:
        content_type_text = content_type.decode()
    except UnicodeDecodeError:
        return None
    headers: dict[str, str] | None = {}
    start = plain.end()
    if more is not None:
        headers, start = _headers_at(data, start)
    if headers is None or not math.isfinite(published_at):
        return None
    # The slots set as Message(...) sets them, without the call to __init__
    # (tests/test_envelope.py compares every slot with what __init__ gives).
    message = _new(Message)
    message.id = message_id.decode()
    message.topic = topic
    message.payload = data[start:]
    message.content_type = content_type_text
    message.headers = headers
    message.published_at = published_at
    return message


_ID_START = MAGIC + b'{"id":"'
_ID_AT = len(_ID_START)
_HEX_DIGITS = b"0123456789abcdef"


def decode_many(
    topic: str, values: Sequence[bytes], raw_content_type: str | None = None
) -> list[Message]:
    """``[decode(topic, value, raw_content_type) for value in values]``, cheaper for the
    values of one ``publish_many``, whose headers differ only in their ids: a value
    whose header after the id is the previous one's, byte for byte, and whose id has
    its length and is hex, is read as that one was (tests/test_envelope.py compares
    the two on any values). Never raises, as :func:`decode` never does."""
    messages: list[Message] = []
    append = messages.append
    # (the previous header's bytes after its id, where its id ended, its content type
    # and time, whether headers follow) once one was read by decode's plain path
    tail = b""
    id_end = tail_end = 0
    content_type = ""
    published_at = 0.0
    with_headers = False
    for data in values:
        if (
            tail
            and type(data) is bytes
            and data[id_end:tail_end] == tail
            and data[:_ID_AT] == _ID_START
            and not data[_ID_AT:id_end].translate(None, _HEX_DIGITS)
        ):
            headers: dict[str, str] | None = {}
            start = tail_end
            if with_headers:
                headers, start = _headers_at(data, start)
            if headers is not None:
                message = _new(Message)
                message.id = data[_ID_AT:id_end].decode()
                message.topic = topic
                message.payload = data[start:]
                message.content_type = content_type
                message.headers = headers
                message.published_at = published_at
                append(message)
                continue
        plain = _PLAIN_HEADER.match(data) if type(data) is bytes else None
        read = None if plain is None else _plain_message(topic, data, plain)
        if plain is None or read is None:
            # not read by the plain path: decode's general path reads it, and the next
            # value is not compared with it
            append(decode(topic, data, raw_content_type))
            tail = b""
            continue
        append(read)
        id_end = plain.end(1)
        tail_end = plain.end()
        tail = data[id_end:tail_end]
        content_type = read.content_type
        published_at = read.published_at
        with_headers = plain.group(4) is not None
    return messages


def _headers_at(data: bytes, start: int) -> tuple[dict[str, str] | None, int]:
    """The headers object at ``start`` of an envelope, read by the JSON scanner alone
    as the decoder would read it, and where the payload begins; None for the
    headers where the header does not end right after the object (``}`` and the line
    break) or the decoder's checks would have more to judge: a ``\\u`` escape (a lone
    surrogate?), a value that is not a str, anything that does not scan."""
    end = data.find(b"\n", start)
    if end == -1:
        return None, start
    try:
        text = data[start:end].decode()
        if "\\u" in text:
            return None, start
        value, stop = _SCAN(text, 0)
    except _NOT_OURS:  # not UTF-8, no JSON value there, nested past the recursion limit
        return None, start
    if stop != len(text) - 1 or text[stop] != "}" or type(value) is not dict:
        return None, start
    for key, item in value.items():
        if type(key) is not str or type(item) is not str:
            return None, start
    return value, end + 1


def _from_json_header(topic: str, header: bytes, payload: bytes) -> Message | None:
    """The message of a JSON header, or None if the header is not one brokerkit wrote."""
    try:
        text = header.decode()
        if _too_deep(text):
            return None
        fields, end = _HEADER_DECODER.raw_decode(text)
        if text[end:].strip():
            return None  # JSON and then more: not a header (Lua's cjson rejects it too)
        message_id = fields["id"]
        content_type = fields.get("ct", "application/octet-stream")
        headers = fields.get("h") or {}
        published_at = json_time(fields.get("ts", 0.0))
    except _NOT_OURS:
        return None
    if published_at is None:
        return None
    return _checked(text, message_id, topic, payload, content_type, headers, published_at)


def json_time(ts: object) -> float | None:
    """The publish time of a JSON header's ``ts``: a JSON number only, None for text
    (``"1.5"``, or digits ``float()`` reads beyond ASCII) or a bool, which are no time
    of brokerkit's (docs/wire-format.md). Raises OverflowError past a float's range."""
    if type(ts) is float:
        return ts
    if type(ts) is int:
        return float(ts)
    return None


def _checked(
    text: str,
    message_id: Any,
    topic: str,
    payload: bytes,
    content_type: Any,
    headers: Any,
    published_at: float,
) -> Message | None:
    """The message of a header read from ``text``, or None when its fields are not what
    brokerkit writes (see ``_well_formed`` and ``_utf8``)."""
    if not _well_formed(message_id, content_type, headers, published_at):
        return None
    if not _utf8(text, message_id, content_type, headers):
        return None
    return Message(message_id, topic, payload, content_type, headers, published_at)


#: What parsing a header another program wrote may raise: a bad value or type, a
#: missing key, JSON nested past the recursion limit, a number too large for a float,
#: or, from a hostile value, anything else. Decoding promises never to raise.
_NOT_OURS = (Exception,)


def _well_formed(
    message_id: object, content_type: object, headers: object, published_at: float
) -> bool:
    if not (
        type(message_id) is str
        and message_id
        and type(content_type) is str
        and type(headers) is dict
        # brokerkit writes finite times; "ts":1e999 or NaN would not re-encode as JSON
        and math.isfinite(published_at)
    ):
        return False
    for key, value in headers.items():  # a loop: all() of a generator costs twice as much
        if type(key) is not str or type(value) is not str:
            return False
    return True


def _utf8(json_text: str, message_id: str, content_type: str, headers: dict[str, str]) -> bool:
    """Whether every text re-encodes as UTF-8. Only a JSON escape (``\\ud800``) can
    give a lone surrogate, which would make the message impossible to dead-letter
    or re-publish; text without ``\\u`` is not checked further."""
    if "\\u" not in json_text:
        return True
    try:
        message_id.encode()
        content_type.encode()
        for key, value in headers.items():
            key.encode()
            value.encode()
    except UnicodeEncodeError:
        return False
    return True


def raw_message(topic: str, data: bytes, content_type: str | None = None) -> Message:
    """A message for a plain value another program wrote; its id is the value's digest
    (the first 24 hex digits of its SHA-1, which Redis's Lua can compute too)."""
    return Message(
        id="raw-" + hashlib.sha1(data).hexdigest()[:24],
        topic=topic,
        payload=data,
        content_type=content_type or _guess(data),
        headers={},
        published_at=0.0,
    )


#: The decoder's scanner (what its raw_decode runs): one JSON value read from a
#: position, as (value, end); StopIteration where none starts there.
_SCAN: Callable[[str, int], tuple[Any, int]] = _HEADER_DECODER.scan_once  # type: ignore[attr-defined]


def _guess(data: bytes) -> str:
    """JSON if it parses as JSON, text if it is UTF-8, bytes otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json reads
        return "text/plain; charset=utf-8"
    return "application/json"
