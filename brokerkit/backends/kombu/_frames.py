"""Reading what another program published with properties py-amqp cannot decode.

AMQP sends a message's short-string properties (``message_id``, ``content_type``,
``correlation_id``...) and its header table's keys as bytes, and RabbitMQ passes on
whatever it was sent. py-amqp decodes them as UTF-8 while it reads the message's
content header, and raised ``UnicodeDecodeError`` out of the read for one that is not
(a producer writing Latin-1 ids): the receive failed with it, the connection's framing
was left half way through the message, the message came back to the head of its queue
(a quorum queue's order), and every receive of the group failed the same way, for ever:
a poison message that ``max_deliveries`` could not dead-letter, as no delivery was
ever made of it.

:func:`frame_handler` (given to py-amqp's connection, see :mod:`._connection`) reads
such a content header again, rewritten: each short string that is not UTF-8 is shown
with its bad bytes escaped (``\\xff``), cut to 255 bytes; a header table py-amqp still
cannot read (a key that is not UTF-8) is left out, with the delivery count it carries
(its ``attempt`` is then 1, or 2 once redelivered). A header that decodes, the usual
case, costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import pack, unpack_from
from typing import Any

from amqp import method_framing, serialization  # type: ignore[import-untyped]

__all__ = ["frame_handler"]

#: A content header frame.
_HEADER_FRAME = 2
#: Where the property flags start in a content header: class id, weight, body size.
_FLAGS_AT = 12
#: The table of application headers among Basic's properties.
_TABLE = 0x2000
#: Basic's properties after the flags, in order: their flag and how they are sent
#: (``s`` a short string, ``F`` a table, ``o`` an octet, ``T`` a timestamp).
_BASIC = (
    (0x8000, "s"),  # content_type
    (0x4000, "s"),  # content_encoding
    (_TABLE, "F"),  # application headers
    (0x1000, "o"),  # delivery_mode
    (0x0800, "o"),  # priority
    (0x0400, "s"),  # correlation_id
    (0x0200, "s"),  # reply_to
    (0x0100, "s"),  # expiration
    (0x0080, "s"),  # message_id
    (0x0040, "T"),  # timestamp
    (0x0020, "s"),  # type
    (0x0010, "s"),  # user_id
    (0x0008, "s"),  # app_id
    (0x0004, "s"),  # cluster_id
)
_SIZES = {"o": 1, "T": 8}


def frame_handler(connection: Any, callback: Callable[..., Any]) -> Callable[[Any], Any]:
    """py-amqp's frame handler, reading again, rewritten (see the module), a content
    header whose properties are not UTF-8."""
    on_frame = method_framing.frame_handler(connection, callback)

    def handle(frame: Any) -> Any:
        try:
            return on_frame(frame)
        except UnicodeDecodeError:
            frame_type, channel, buf = frame
            if frame_type != _HEADER_FRAME:
                raise
            # (py-amqp left the message waiting for this header: read it again)
            return on_frame((frame_type, channel, readable_header(bytes(buf))))

    return handle


def readable_header(buf: bytes) -> bytes:
    """The content header ``buf`` with every short string made UTF-8 and a header
    table that does not decode left out."""
    (flags,) = unpack_from(">H", buf, _FLAGS_AT)
    offset = _FLAGS_AT + 2
    parts: list[bytes] = []
    for flag, kind in _BASIC:
        if not flags & flag:
            continue
        if kind == "s":
            size = buf[offset]
            parts.append(_short(buf[offset + 1 : offset + 1 + size]))
            offset += 1 + size
        elif kind == "F":
            (size,) = unpack_from(">I", buf, offset)
            table = buf[offset : offset + 4 + size]
            offset += 4 + size
            try:
                serialization.loads("F", table, 0)
            except UnicodeDecodeError:
                flags &= ~_TABLE
                continue
            parts.append(table)
        else:
            parts.append(buf[offset : offset + _SIZES[kind]])
            offset += _SIZES[kind]
    return buf[:_FLAGS_AT] + pack(">H", flags) + b"".join(parts) + buf[offset:]


def _short(raw: bytes) -> bytes:
    """``raw`` as a short string of UTF-8: as it is if it is UTF-8 (as py-amqp reads
    it), else with its bad bytes escaped, cut to 255 bytes on a character's end."""
    try:
        raw.decode("utf-8", "surrogatepass")
        text = raw
    except UnicodeDecodeError:
        escaped = raw.decode("utf-8", "backslashreplace").encode("utf-8")
        text = escaped[:255].decode("utf-8", "ignore").encode("utf-8")
    return bytes([len(text)]) + text
