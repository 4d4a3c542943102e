"""How brokerkit names things on a NATS server and writes messages into JetStream.

* One stream per ``prefix``, named like it, capturing the subjects ``<prefix>.>``.
* Topic ``a.b`` is subject ``<prefix>.a.b``. A topic's empty tokens (``a..b``,
  ``a.``), which NATS forbids, are written ``%``: topics never hold ``%``, so the
  mapping is one to one.
* A group of a topic is one durable pull consumer, ``g_<digest of topic and group>``,
  filtered on the topic's subject, with the topic and group in its description.
* A message is the payload as it is, with two headers: ``Nats-Msg-Id`` (the message id,
  so that JetStream drops a retried publish within its duplicate window) and
  ``Bk-Meta``, a JSON object with the id, content type, publish time and headers
  (JSON keeps any header text within what a NATS header line may hold).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from brokerkit._message import Message
from brokerkit._schedule import finite_seconds
from brokerkit._serializers import json_object
from brokerkit.exceptions import InvalidMessage

__all__ = [
    "MAX_HEADER_BYTES",
    "META_HEADER",
    "MSG_ID_HEADER",
    "TRUNCATED",
    "check_header_size",
    "consumer_description",
    "consumer_name",
    "dead_letter_headers",
    "decode",
    "encode_headers",
    "header_size",
    "parse_description",
    "subject_for",
    "wire_size",
]

META_HEADER = "Bk-Meta"
MSG_ID_HEADER = "Nats-Msg-Id"
#: JetStream refuses to store a message whose header block is larger ("header size
#: exceeds maximum allowed of 64k"), after it was sent.
MAX_HEADER_BYTES = 65535
#: How a dead letter's ``x-dead-letter-reason`` ends when it was cut short to fit.
TRUNCATED = "[truncated]"


def subject_for(prefix: str, topic: str) -> str:
    """The subject that carries ``topic``."""
    return prefix + "." + ".".join(token or "%" for token in topic.split("."))


def consumer_name(topic: str, group: str) -> str:
    """The durable consumer of ``group`` on ``topic``: stable, and a valid name."""
    digest = hashlib.sha256(f"{topic}\0{group}".encode()).hexdigest()[:32]
    return f"g_{digest}"


def consumer_description(topic: str, group: str) -> str:
    """What the consumer's description says, so that ``inspect`` can name the group."""
    return json.dumps({"brokerkit": 1, "topic": topic, "group": group}, separators=(",", ":"))


def parse_description(description: str | None) -> tuple[str, str] | None:
    """The topic and group of a consumer brokerkit made, or None for another's."""
    try:
        fields = json.loads(description or "")
        topic, group = fields["topic"], fields["group"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(topic, str) and isinstance(group, str):
        return topic, group
    return None


def encode_headers(message: Message, *, msg_id: str | None = None) -> dict[str, str]:
    """The NATS headers that carry ``message``'s metadata."""
    meta: dict[str, Any] = {
        "id": message.id,
        "ct": message.content_type,
        "ts": message.published_at,
    }
    if message.headers:
        meta["h"] = dict(message.headers)
    return {
        MSG_ID_HEADER: msg_id or message.id,
        META_HEADER: json.dumps(meta, separators=(",", ":")),  # ASCII: no line breaks
    }


def dead_letter_headers(
    message: Message,
    topic: str,
    reason: str,
    deliveries: int,
    *,
    msg_id: str,
    stored: dict[str, str] | None,
    room: int,
) -> dict[str, str]:
    """The NATS headers of ``message``'s dead letter on ``topic``, in ``room`` bytes of
    header block (:func:`header_size`) if the message's own fit there.

    The dead letter is the message with its headers, plus ``x-dead-letter-reason``
    (``reason``), ``x-original-topic`` and ``x-deliveries``, and ``msg_id`` as its
    ``Nats-Msg-Id``. Where that does not fit, the reason is cut to as much as fits,
    followed by :data:`TRUNCATED`; where not even that fits, the dead letter carries
    ``stored`` (the headers the message was stored with) as they are but JetStream's
    own (``Nats-...``: ``Nats-Expected-Last-Sequence``, ``Nats-Rollup``..., which it
    would obey), with ``msg_id`` as its ``Nats-Msg-Id`` if there is room for it, else
    with none (never the original's own, which JetStream would take for a duplicate of
    the original).

    :param stored: the entry's NATS headers as the server delivered them.
    :param room: the most header bytes the dead letter may take.
    """

    def with_reason(text: str) -> dict[str, str]:
        extra = {"x-dead-letter-reason": text, "x-original-topic": message.topic}
        extra["x-deliveries"] = str(deliveries)
        letter = Message(
            message.id,
            topic,
            message.payload,
            message.content_type,
            {**message.headers, **extra},
            message.published_at,
        )
        return encode_headers(letter, msg_id=msg_id)

    full = with_reason(reason)
    if header_size(full) <= room:
        return full
    # The longest part of the reason that fits, marked: the size grows with the part.
    low, high = 0, max(len(reason) - 1, 0)
    if header_size(with_reason(TRUNCATED)) <= room:
        while low < high:
            middle = (low + high + 1) // 2
            if header_size(with_reason(reason[:middle] + TRUNCATED)) <= room:
                low = middle
            else:
                high = middle - 1
        return with_reason(reason[:low] + TRUNCATED)
    # (JetStream's own headers are orders on a publish, not the message's: a stored
    # Nats-Expected-Last-Sequence, true when another program stored it, would refuse
    # the dead letter every time)
    kept = {k: v for k, v in (stored or {}).items() if not k.lower().startswith("nats-")}
    identified = {MSG_ID_HEADER: msg_id, **kept}
    return identified if header_size(identified) <= room else kept


def decode(
    topic: str, payload: bytes, headers: dict[str, str] | None, stream_seq: int, ts: float
) -> Message:
    """The message in a JetStream entry. Never raises: an entry another program wrote
    (no ``Bk-Meta``, or one that is not brokerkit's: not a JSON object, an id or
    content type that is not a str, a publish time that is not a finite number,
    headers that are not str to str) is a raw message, with id ``nats-<stream
    sequence>``."""
    found = _envelope(topic, payload, (headers or {}).get(META_HEADER))
    if found is not None:
        return found
    plain = {
        str(k): str(v)
        for k, v in (headers or {}).items()
        if isinstance(k, str) and not k.startswith("Nats-")
    }
    return Message(f"nats-{stream_seq}", topic, payload, "application/octet-stream", plain, ts)


def _envelope(topic: str, payload: bytes, text: object) -> Message | None:
    """The message ``Bk-Meta`` describes, or None if it is not brokerkit's."""
    meta = json_object(text) if isinstance(text, str) else None
    if meta is None:
        return None
    message_id, content_type = meta.get("id"), meta.get("ct")
    published_at = finite_seconds(meta.get("ts"))
    extra = meta.get("h") or {}
    if (
        isinstance(message_id, str)
        and isinstance(content_type, str)
        and published_at is not None
        and isinstance(extra, dict)
        and all(isinstance(v, str) for v in extra.values())  # JSON keys are str
    ):
        return Message(message_id, topic, payload, content_type, extra, published_at)
    return None


def wire_size(payload: bytes, headers: dict[str, str]) -> int:
    """About what the server counts against its ``max_payload``: the payload and the
    headers block."""
    return len(payload) + header_size(headers)


def header_size(headers: dict[str, str]) -> int:
    """The bytes of the headers block nats-py writes for ``headers`` (``NATS/1.0``
    line, ``name: value`` lines, blank line)."""
    return sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items()) + 12


def check_header_size(message_id: str, headers: dict[str, str]) -> None:
    """Refuse, before anything is sent, headers JetStream would refuse to store.

    :raises InvalidMessage: the headers block is over :data:`MAX_HEADER_BYTES`.
    """
    size = header_size(headers)
    if size > MAX_HEADER_BYTES:
        raise InvalidMessage(
            f"message {message_id} has {size:,} bytes of NATS headers (its headers, "
            "content type and id, as brokerkit writes them), more than JetStream "
            f"stores ({MAX_HEADER_BYTES:,} bytes); nothing was published. Carry large "
            "values in the body, or store them elsewhere and publish a reference"
        )
