"""Reading what another program published with fields py-amqp cannot decode.

AMQP sends a message's short-string properties (``message_id``, ``content_type``,
``correlation_id``...), its header table's keys and its delivery's routing key as
bytes, and RabbitMQ passes on whatever it was sent. py-amqp decodes them as UTF-8,
and raised ``UnicodeDecodeError`` for one that is not (a producer writing Latin-1):

* from the read of the content header (a property): the connection's framing was
  left half way through the message, it came back to the head of its queue (a quorum
  queue's order), and every receive of the group failed the same way, for ever: a
  poison message that ``max_deliveries`` could not dead-letter, as no delivery was
  ever made of it;
* from the dispatch of the ``basic.deliver`` / ``basic.get-ok`` (its routing key or
  exchange), once the whole message was read: the receive failed with it, and the
  message stayed unacknowledged on the channel, known to nobody, holding one of the
  consumer's prefetch (and the group's order) until the channel closed.

:func:`frame_handler` (given to py-amqp's connection, see :mod:`._connection`) makes
both readable. A content header whose properties do not decode is read again,
rewritten: each short string that is not UTF-8 shown with its bad bytes escaped
(``\\xff``), cut to 255 bytes, and each header name so too (an entry whose value still
does not decode, under an older py-amqp, is left out; the others stay, the quorum
queue's ``x-delivery-count`` with them, so ``max_deliveries`` counts its attempts). A
delivery method whose short strings do not decode is dispatched rewritten the same
way (the routing key escaped): the message is delivered as any other. A frame that
decodes, the usual case, is dispatched as it came; an error raised after py-amqp took
a frame in (by what it dispatches) is raised as it is, never read again.

Each frame is counted against the deadline of a publish under way first
(:func:`._blocked.frame_read`): a server's heartbeats do not carry a wait py-amqp runs
inside one read past it.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import pack, unpack_from
from typing import Any

from amqp import method_framing, serialization, spec  # type: ignore[import-untyped]
from amqp.basic_message import Message  # type: ignore[import-untyped]
from amqp.channel import Channel  # type: ignore[import-untyped]

from brokerkit.backends.kombu._blocked import frame_read

__all__ = ["frame_handler", "readable_args", "readable_header"]

#: A content header frame.
_HEADER_FRAME = 2
#: Where the property flags start in a content header: class id, weight, body size.
_FLAGS_AT = 12
#: Where a method's arguments start in its frame: class id, method id.
_ARGS_AT = 4
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
_SIZES = {"o": 1, "T": 8, "B": 2, "l": 4, "L": 8}
#: The methods that carry a message, with their arguments as py-amqp reads them.
_CARRIERS = {
    sig: Channel._METHODS[sig].args
    for sig in (spec.Basic.Deliver, spec.Basic.GetOk, spec.Basic.Return)
}
#: The size of a table value of each type after its type octet: fixed, or (None)
#: a 4-byte length and that many bytes.
_ITEM = {
    "t": 1, "b": 1, "B": 1, "s": 2, "U": 2, "u": 2, "I": 4, "i": 4, "f": 4,
    "L": 8, "l": 8, "d": 8, "T": 8, "D": 5, "V": 0,
    "S": None, "x": None, "F": None, "A": None,
}  # fmt: skip


def frame_handler(connection: Any, callback: Callable[..., Any]) -> Callable[[Any], Any]:
    """py-amqp's frame handler, reading a content header whose properties are not
    UTF-8 again, rewritten, and dispatching a delivery whose routing key is not UTF-8
    rewritten (see the module); within a publish's deadline, none past it.

    :raises Expired: a publish's deadline ran out (see :func:`._blocked.frame_read`).
    """

    def dispatch(channel: int, method_sig: Any, buf: Any, content: Any) -> Any:
        args = _CARRIERS.get(method_sig)
        if args is not None:
            buf = readable_args(args, buf)
        return callback(channel, method_sig, buf, content)

    on_frame = method_framing.frame_handler(connection, dispatch)

    def handle(frame: Any) -> Any:
        frame_read()
        try:
            return on_frame(frame)
        except UnicodeDecodeError:
            frame_type, channel, buf = frame
            if frame_type != _HEADER_FRAME or _decodes(bytes(buf)):
                # Raised by what py-amqp dispatched, the frame taken in: not read again.
                raise
            # (py-amqp left the message waiting for this header: read it again)
            return on_frame((frame_type, channel, readable_header(bytes(buf))))

    return handle


def _decodes(header: bytes) -> bool:
    """Whether py-amqp reads the properties of the content header ``header``."""
    (class_id,) = unpack_from(">H", header, 0)
    try:
        Message()._load_properties(class_id, header, _FLAGS_AT)
    except UnicodeDecodeError:
        return False
    return True


def readable_args(args: str, buf: Any) -> Any:
    """The frame ``buf`` of a method whose arguments py-amqp reads as ``args``, with
    every short string made UTF-8 (``buf`` itself when each is already)."""
    offset = _ARGS_AT
    parts: list[bytes] = []
    start = 0
    bits = 0
    for kind in args:
        if kind == "b":
            if not bits:  # (a run of bits shares an octet)
                offset += 1
                bits = 8
            bits -= 1
            continue
        bits = 0
        if kind != "s":
            offset += _SIZES[kind]
            continue
        size = buf[offset]
        raw = bytes(buf[offset + 1 : offset + 1 + size])
        if not _is_utf8(raw):
            parts += [bytes(buf[start:offset]), _short(raw)]
            start = offset + 1 + size
        offset += 1 + size
    if not parts:
        return buf
    return b"".join([*parts, bytes(buf[start:])])


def readable_header(buf: bytes) -> bytes:
    """The content header ``buf`` with every short string made UTF-8, and its header
    table's names so too (see :func:`readable_table`)."""
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
            parts.append(readable_table(buf[offset : offset + 4 + size]))
            offset += 4 + size
        else:
            parts.append(buf[offset : offset + _SIZES[kind]])
            offset += _SIZES[kind]
    return buf[:_FLAGS_AT] + pack(">H", flags) + b"".join(parts) + buf[offset:]


def readable_table(table: bytes) -> bytes:
    """The field table ``table`` (its 4-byte size first) as py-amqp reads it: each
    name that is not UTF-8 escaped, and an entry whose value still does not decode
    (a long string that is not UTF-8, under an older py-amqp) left out: the others,
    ``x-delivery-count`` among them, stay."""
    if _loads(table):
        return table
    (size,) = unpack_from(">I", table, 0)
    end = 4 + size
    offset = 4
    entries: list[bytes] = []
    while offset < end:
        name_size = table[offset]
        name = _short(table[offset + 1 : offset + 1 + name_size])
        offset += 1 + name_size
        value_end = _item_end(table, offset)
        if value_end is None:  # a type py-amqp does not read either: the rest goes
            break
        entry = name + table[offset:value_end]
        offset = value_end
        if _loads(pack(">I", len(entry)) + entry):
            entries.append(entry)
    body = b"".join(entries)
    return pack(">I", len(body)) + body


def _item_end(table: bytes, offset: int) -> int | None:
    """Where the table value at ``offset`` (its type octet) ends; None for a type
    this does not know."""
    kind = chr(table[offset])
    if kind not in _ITEM:
        return None
    size = _ITEM[kind]
    if size is None:
        (length,) = unpack_from(">I", table, offset + 1)
        return int(offset + 5 + length)
    return offset + 1 + size


def _loads(table: bytes) -> bool:
    """Whether py-amqp reads the field table ``table``."""
    try:
        serialization.loads("F", table, 0)
    except UnicodeDecodeError:
        return False
    return True


def _is_utf8(raw: bytes) -> bool:
    """Whether py-amqp decodes ``raw`` (UTF-8, lone surrogates allowed)."""
    try:
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


def _short(raw: bytes) -> bytes:
    """``raw`` as a short string of UTF-8: as it is if it is UTF-8 (as py-amqp reads
    it), else with its bad bytes escaped, cut to 255 bytes on a character's end."""
    if _is_utf8(raw):
        text = raw
    else:
        escaped = raw.decode("utf-8", "backslashreplace").encode("utf-8")
        text = escaped[:255].decode("utf-8", "ignore").encode("utf-8")
    return bytes([len(text)]) + text
