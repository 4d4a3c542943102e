"""How a message is written into a Redis value, and read back.

A framed envelope is ``BK1`` + a JSON header line + the payload bytes, so that
``redis-cli`` shows readable metadata and the body is never re-encoded::

    BK1{"id":"...","ct":"application/json","ts":1700000000.0,"h":{...}}\n<payload>

Streams store the same facts in a header field ``bk1`` (one line each) and the payload
in a field ``body``.
A value that is not an envelope is a *raw* payload that another program wrote.

Decoding is total: :func:`decode`, :func:`decode_fields` and :func:`raw_message`
never raise, whatever bytes they are given, so that one hostile value cannot jam a
topic. A header that does not parse as one brokerkit wrote (not UTF-8, not JSON,
nested deeper than Python reads, a ``ts`` that is not a finite number, headers that
are not str to str...) makes the value a raw message: its payload is the whole
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from brokerkit._message import Message

__all__ = [
    "BODY_FIELD",
    "HEADER_FIELD",
    "MAGIC",
    "decode",
    "decode_fields",
    "encode",
    "encode_fields",
    "header_lines",
    "message_from_header",
    "messages_from_headers",
    "raw_message",
    "stream_header",
]

MAGIC = b"BK1"
_HEADER_DECODER = json.JSONDecoder()


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
    global _last_time
    plain = _PLAIN_HEADER.match(data) if type(data) is bytes else None
    if plain is not None:
        # The header encode writes, read here as the JSON decoder would read it
        # (without calls: a consumer decodes every element it fetches). A content
        # type that is not UTF-8, an infinite time or headers that the scanner alone
        # cannot judge (see _headers_at) are left to the general path below.
        message_id, content_type, ts, more = plain.groups()
        # publish_many gives a batch one time: the text last converted is kept
        # (one tuple, replaced whole, so that threads decoding at once read a pair).
        last = _last_time
        if last[0] == ts:
            published_at = last[1]
        else:
            published_at = float(ts)
            _last_time = (ts, published_at)
        try:
            content_type_text = content_type.decode()
        except UnicodeDecodeError:
            content_type_text = None
        headers: dict[str, str] | None = {}
        start = plain.end()
        if more is not None:
            headers, start = _headers_at(data, start)
        if content_type_text is not None and headers is not None and math.isfinite(published_at):
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
    if data.startswith(MAGIC):
        end = data.find(b"\n", len(MAGIC))
        if end != -1:
            read = _from_json_header(topic, data[len(MAGIC) : end], data[end + 1 :])
            if read is not None:
                return read
    return raw_message(topic, data, raw_content_type)


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
        fields, end = _HEADER_DECODER.raw_decode(text)
        if text[end:].strip():
            return None  # JSON and then more: not a header (Lua's cjson rejects it too)
        message_id = fields["id"]
        content_type = fields.get("ct", "application/octet-stream")
        headers = fields.get("h") or {}
        published_at = float(fields.get("ts", 0.0))
    except _NOT_OURS:
        return None
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


#: The stream field holding the JSON header (the envelope's, without ``BK1``).
HEADER_FIELD = b"bk1"
#: The stream field holding the payload.
BODY_FIELD = b"body"


#: Short names the stream header uses for common content types. A content type
#: always holds a "/", a short name never does.
_SHORT_CONTENT_TYPES = {
    "application/octet-stream": "bin",
    "application/json": "json",
    "text/plain; charset=utf-8": "text",
    "application/msgpack": "msgpack",
}
_CONTENT_TYPES = {short: full for full, short in _SHORT_CONTENT_TYPES.items()}


def stream_header(message: Message) -> str:
    """The header stored in a stream entry's :data:`HEADER_FIELD`: one line each for
    the id, the content type (``bin``, ``json``, ``text`` and ``msgpack`` stand for
    the common ones), the publish time and (when there are any) the headers as a
    JSON object, such as ``018c...\njson\n1700000000.5``.

    Splitting lines costs a fraction of parsing JSON on every delivery. An id or
    content type that holds a line break, or a content type without a ``/``, is
    written as the JSON header of :func:`encode` instead;
    :func:`message_from_header` reads both.
    """
    message_id, content_type = message.id, message.content_type
    if "\n" in message_id or "\n" in content_type or "/" not in content_type:
        return json.dumps(
            {
                "id": message_id,
                "ct": content_type,
                "ts": message.published_at,
                "h": dict(message.headers),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
    short = _SHORT_CONTENT_TYPES.get(content_type, content_type)
    header = f"{message_id}\n{short}\n{message.published_at!r}"
    if message.headers:
        # JSON never writes a raw line break, so the headers stay on one line.
        header += "\n" + json.dumps(
            dict(message.headers), ensure_ascii=False, separators=(",", ":")
        )
    return header


def encode_fields(message: Message) -> dict[str, Any]:
    """The message as stream fields: ``bk1`` (the header, see :func:`stream_header`)
    and ``body`` (the payload, as it is). Two fields, so an entry costs little more
    than a bare ``XADD s * body <payload>``."""
    return {"bk1": stream_header(message), "body": message.payload}


#: The time line :func:`message_from_header` converted last, and its value.
_last_line_time: tuple[str, float] = ("", 0.0)


def message_from_header(topic: str, header: bytes, payload: bytes) -> Message | None:
    """The message whose :data:`HEADER_FIELD` is ``header``, or ``None`` when
    ``header`` is not a brokerkit header (another program wrote the entry)."""
    global _last_line_time
    try:
        text = header.decode()
        parts = text.split("\n")
        if len(parts) == 3 and text[:1] != "{":
            # What brokerkit writes for a message without headers, checked as below but
            # without the calls: split lines of strictly decoded UTF-8 are str and hold
            # no lone surrogate (only a JSON escape gives one), so of _well_formed and
            # _utf8 only the id, the content type and the time are left to check.
            message_id, content_type, ts = parts
            last = _last_line_time  # as in decode: one publish_many, one time
            if last[0] == ts:
                published_at = last[1]
            else:
                published_at = float(ts)
                _last_line_time = (ts, published_at)
            content_type = _CONTENT_TYPES.get(content_type, content_type)
            if message_id and "/" in content_type and math.isfinite(published_at):
                message = _new(Message)  # as decode makes it
                message.id = message_id
                message.topic = topic
                message.payload = payload
                message.content_type = content_type
                message.headers = {}
                message.published_at = published_at
                return message
            return None
        if text[:1] == "{":
            fields, _ = _HEADER_DECODER.raw_decode(text)
            message_id, content_type = fields["id"], fields["ct"]
            published_at, headers = float(fields["ts"]), fields.get("h") or {}
        elif len(parts) == 4:
            message_id, content_type, ts, encoded = parts
            headers = json.loads(encoded)
            published_at = float(ts)
            content_type = _CONTENT_TYPES.get(content_type, content_type)
            if "/" not in content_type:
                return None
        else:
            return None
    except _NOT_OURS:
        return None
    if not _well_formed(message_id, content_type, headers, published_at):
        return None
    if not _utf8(text, message_id, content_type, headers):
        return None
    return Message(message_id, topic, payload, content_type, headers, published_at)


#: What :func:`header_lines` reads from a batch of headers: the ids, content types,
#: publish times and headers (None: no message has any) of its messages.
HeaderLines = tuple[list[str], list[str], list[float], list[dict[str, str]] | None]


def messages_from_headers(
    topic: str, headers: Sequence[bytes], payloads: Sequence[bytes]
) -> list[Message] | None:
    """The messages of a batch of :data:`HEADER_FIELD` values and their payloads, each
    exactly as :func:`message_from_header` reads it, when every header is the three
    lines brokerkit writes for a message without headers, or every header the four
    lines of one with headers, and each of them makes a message; otherwise ``None``
    (the caller then reads them one by one, and each header gets its own answer).
    See :func:`header_lines`. A batch of one (what a fetch with prefetch 1 brings) is
    read by :func:`message_from_header` itself: its message, or ``None``.
    """
    if len(headers) == 1 and len(payloads) == 1:
        # Reading a batch at once costs a few calls more than reading one header.
        message = message_from_header(topic, headers[0], payloads[0])
        return None if message is None else [message]
    lines = header_lines(headers)
    if lines is None:
        return None
    return Message._many(topic, lines[0], payloads, *lines[1:])


def header_lines(headers: Sequence[bytes]) -> HeaderLines | None:
    """What the messages of a batch of :data:`HEADER_FIELD` values are made of (ids,
    content types, publish times, headers), each exactly as
    :func:`message_from_header` reads it, when every header is the three lines
    brokerkit writes for a message without headers, or every header the four lines
    of one with headers, and each of them makes a message; otherwise ``None``.

    A consumer's fetch brings a batch: one join, decode and split for all of it costs
    less than one per header, the publish times are converted once per distinct text
    (a ``publish_many`` gives its whole batch one time), and each headers line is read
    by the JSON scanner alone, without json.loads around it. Never raises.
    """
    count = len(headers)
    if not count:
        return [], [], [], None
    try:
        # Joined by a line "\0" of their own: when the only such lines are the
        # count - 1 separators and they fall at every fourth (fifth) line, each header
        # has exactly three (four) lines. bytes.join refuses anything but bytes-like
        # values, and strict UTF-8 of the headers joined by ASCII is the strict UTF-8
        # of each.
        text = b"\n\0\n".join(headers).decode()
        lines = text.split("\n")
        step = (len(lines) + 1) // count
        if (
            step not in (4, 5)
            or len(lines) != step * count - 1
            or lines[step - 1 :: step].count("\0") != count - 1
        ):
            return None
        ids, short_types, times = lines[0::step], lines[1::step], lines[2::step]
        # No other line may be a "\0": one where an id would be sends the batch one
        # by one; one where a content type, time or headers line would be fails its
        # check below. Then the separators are the lines "\0" found where they would
        # be, and each header is the lines between two of them.
        # As message_from_header: an empty id is not ours (an empty content type, time
        # or headers line fails its own check below), and a header opening with "{" is
        # read as JSON. A line opening with "{" other than the headers lines (which
        # must, to be JSON objects) sends the batch one by one (a content type or time
        # such as that is rare). Looking for "{" alone is a memchr; a two-character
        # search stops at every line break, ten times the cost.
        if "" in ids or "\0" in ids:
            return None
        if "{" in text and (text[0] == "{" or text.count("\n{") != (count if step == 5 else 0)):
            return None
        # A batch usually holds one content type and one publish time (publish_many
        # gives its batch one): each distinct one is looked up, checked and converted
        # once. That there is one is seen by comparing (a list's count), without
        # hashing each line.
        short = short_types[0]
        if short_types.count(short) == count:
            content_type = _CONTENT_TYPES.get(short, short)
            if "/" not in content_type:
                return None
            content_types = [content_type] * count
        else:
            types: dict[str, str] = dict.fromkeys(short_types, "")
            for short in types:
                content_type = _CONTENT_TYPES.get(short, short)
                if "/" not in content_type:
                    return None
                types[short] = content_type
            content_types = list(map(types.__getitem__, short_types))
        ts = times[0]
        if times.count(ts) == count:
            published_at = float(ts)
            if not math.isfinite(published_at):
                return None
            published = [published_at] * count
        else:
            stamps: dict[str, float] = dict.fromkeys(times, 0.0)
            for ts in stamps:
                published_at = float(ts)
                if not math.isfinite(published_at):
                    return None
                stamps[ts] = published_at
            published = list(map(stamps.__getitem__, times))
        extra = None if step == 4 else _headers_lines(text, lines[3::step])
        if step == 5 and extra is None:
            return None
        return ids, content_types, published, extra
    except _NOT_OURS:
        return None


#: The decoder's scanner (what its raw_decode runs): one JSON value read from a
#: position, as (value, end); StopIteration where none starts there.
_SCAN: Callable[[str, int], tuple[Any, int]] = _HEADER_DECODER.scan_once  # type: ignore[attr-defined]


def _headers_lines(text: str, lines: list[str]) -> list[dict[str, str]] | None:
    """The headers of each line, as message_from_header reads each, or None when one
    is not a JSON object of str to str alone on its line, or when the batch's
    ``text`` holds a ``\\u`` escape (which could give a lone surrogate: one by one,
    those are checked). The scanner raises StopIteration where no JSON value starts
    (whitespace before it too), which the caller's ``except`` takes."""
    if "\\u" in text:
        return None
    extra = []
    for line in lines:
        value, end = _SCAN(line, 0)
        if end != len(line) or type(value) is not dict:
            return None
        for key, item in value.items():
            if type(key) is not str or type(item) is not str:
                return None
        extra.append(value)
    return extra


def decode_fields(
    topic: str, fields: Mapping[bytes, bytes], raw_content_type: str | None = None
) -> Message:
    """The message in stream fields; plain fields (``XADD s * k v``) become a raw
    JSON object of those fields unless ``raw_content_type`` says otherwise.

    Reads the ``bk1`` + ``body`` entries :func:`encode_fields` writes, and the
    one-field-per-fact entries (``id``, ``ct``, ``ts``, ``h``, ``body``) of
    earlier brokerkit versions.
    """
    header, payload = fields.get(HEADER_FIELD), fields.get(BODY_FIELD)
    if header is not None and payload is not None:
        message = message_from_header(topic, header, payload)
        if message is not None:
            return message
    if b"id" in fields and payload is not None and b"ct" in fields:
        message = _from_old_fields(topic, fields, payload)
        if message is not None:
            return message
    if payload is not None and len(fields) == 1:
        return raw_message(topic, payload, raw_content_type)
    plain = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
    return raw_message(topic, json.dumps(plain).encode(), raw_content_type or "application/json")


def _from_old_fields(topic: str, fields: Mapping[bytes, bytes], payload: bytes) -> Message | None:
    """A message in the one-field-per-fact layout, or None if the fields do not parse."""
    try:
        message_id, content_type = fields[b"id"].decode(), fields[b"ct"].decode()
        encoded = fields.get(b"h")
        headers = json.loads(encoded) if encoded else {}
        published_at = float(fields.get(b"ts", b"0"))
    except _NOT_OURS:
        return None
    if not _well_formed(message_id, content_type, headers, published_at):
        return None
    if encoded and not _utf8(encoded.decode(errors="replace"), message_id, content_type, headers):
        return None
    return Message(message_id, topic, payload, content_type, headers, published_at)


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
