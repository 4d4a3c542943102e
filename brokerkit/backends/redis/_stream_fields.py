"""How a message is written into a stream entry's fields, and read back: one entry,
or a fetched batch of them at once.

An entry holds two fields: ``bk1``, a header of one line each for the id, the
content type and the publish time (and the headers, when there are any, as a JSON
object), and ``body``, the payload as it is. Reading is total, as in
:mod:`._envelope`: :func:`decode_fields` and :func:`message_from_header` never raise,
and a header that is not one brokerkit wrote makes the entry a raw message (or, for
:func:`message_from_header`, ``None``). A batch (:func:`messages_from_headers`) reads
each header exactly as :func:`message_from_header` reads it alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from brokerkit._message import Message
from brokerkit.backends.redis._envelope import (
    _HEADER_DECODER,
    _NOT_OURS,
    _SCAN,
    _checked,
    _new,
    _too_deep,
    _utf8,
    _well_formed,
    json_time,
    raw_message,
)

__all__ = [
    "BODY_FIELD",
    "HEADER_FIELD",
    "decode_fields",
    "encode_fields",
    "escaped_text",
    "fields_message",
    "header_lines",
    "message_from_header",
    "messages_from_headers",
    "stream_header",
]


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
            if _too_deep(text):
                return None
            fields, _ = _HEADER_DECODER.raw_decode(text)
            message_id, content_type = fields["id"], fields["ct"]
            time, headers = json_time(fields["ts"]), fields.get("h") or {}
            if time is None:
                return None
            published_at = time
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
    return _checked(text, message_id, topic, payload, content_type, headers, published_at)


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
    by the JSON scanner alone, without json.loads around it. A batch whose headers
    share their content type and time lines (one ``publish_many``'s) has only its
    ids split out of the text. Never raises.
    """
    count = len(headers)
    if not count:
        return [], [], [], None
    if count > 1:
        lines = _one_tail(headers, count)
        if lines is not None:
            return lines
    return _line_by_line(headers, count)


def _one_tail(headers: Sequence[bytes], count: int) -> HeaderLines | None:
    """:func:`header_lines` of a batch whose headers are each an id line and the same
    two lines after it (a ``publish_many``'s batch: one content type, one publish
    time), with only the ids split out of the text; None when the batch is not such,
    or is not read so alone (it is then read line by line)."""
    last = headers[-1]
    if type(last) is not bytes or type(headers[0]) is not bytes:
        return None
    cut = last.find(b"\n")
    tail = last[cut:]
    if cut < 1 or tail.count(b"\n") != 2 or not headers[0].endswith(tail):
        return None
    try:
        text = b"\0".join(headers).decode()
        ids = (text + "\0").split(tail.decode() + "\0")
    except _NOT_OURS:
        return None
    # The text is each header and a "\0" after it but the last: when it holds no "\0"
    # but those and no line break but the tail's two per header, and splits at the
    # tail and the "\0" after it into one piece per header (and an empty one after),
    # each header is its piece (one line, no "\0") and the tail.
    if (
        len(ids) != count + 1
        or ids.pop()
        or text.count("\n") != 2 * count
        or text.count("\0") != count - 1
    ):
        return None
    # An empty id, or a line opening with "{", is left to the line by line reading.
    if "" in ids or "{" in text:
        return None
    _, short, ts = tail.decode().split("\n")
    content_type = _CONTENT_TYPES.get(short, short)
    try:
        published_at = float(ts)
    except _NOT_OURS:
        return None
    if "/" not in content_type or not math.isfinite(published_at):
        return None
    return ids, [content_type] * count, [published_at] * count, None


def _line_by_line(headers: Sequence[bytes], count: int) -> HeaderLines | None:
    """:func:`header_lines` of any batch of ``count`` (1 or more) headers."""
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
    return fields_message(topic, fields, raw_content_type)


def fields_message(
    topic: str, fields: Mapping[bytes, bytes], raw_content_type: str | None = None
) -> Message:
    """A raw message whose payload is a JSON object of ``fields``: names and values as
    :func:`escaped_text` shows them, so that two fields of different names never
    become one and no byte goes unseen (a name repeated in one entry, which ``XADD``
    allows, came as one mapping key: its last value)."""
    plain = {escaped_text(k): escaped_text(v) for k, v in fields.items()}
    return raw_message(topic, json.dumps(plain).encode(), raw_content_type or "application/json")


#: What text that reads as escaped holds besides other characters: ``\\\\`` and
#: ``\\xHH`` escapes (HH from 80 to ff: the bytes that are not UTF-8 on their own).
_ESCAPE = re.compile(r"\\(?:\\|x[89a-f][0-9a-f])")


def escaped_text(value: bytes) -> str:
    """``value`` as text, one to one over all byte strings: UTF-8 as it is, unless it
    reads as escaped text (it holds a backslash, and each of its backslashes starts
    a ``\\\\`` or a ``\\xHH`` escape with HH from 80 to ff); any other value (not
    UTF-8, or reading as escaped) with each backslash doubled and each byte that is
    not UTF-8 as a ``\\xff`` escape. So the byte 0xFF shows as ``\\xff`` and the text
    ``\\xff`` as ``\\\\xff``, while ``C:\\tmp`` (``\\t`` is no such escape) stays as
    it is. To read the bytes back: text that reads as escaped is unescaped, any other
    text is UTF-8 as it is."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        pass
    else:
        if "\\" not in text or "\\" in _ESCAPE.sub("", text):
            return text
    return value.replace(b"\\", b"\\\\").decode(errors="backslashreplace")


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
