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

__all__ = [
    "META_HEADER",
    "consumer_description",
    "consumer_name",
    "decode",
    "encode_headers",
    "parse_description",
    "subject_for",
    "wire_size",
]

META_HEADER = "Bk-Meta"
MSG_ID_HEADER = "Nats-Msg-Id"


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


def decode(
    topic: str, payload: bytes, headers: dict[str, str] | None, stream_seq: int, ts: float
) -> Message:
    """The message in a JetStream entry. Never raises: an entry another program wrote
    (no ``Bk-Meta``) is a raw message, with id ``nats-<stream sequence>``."""
    text = (headers or {}).get(META_HEADER)
    if text is not None:
        try:
            meta = json.loads(text)
            message_id, content_type = meta["id"], meta["ct"]
            published_at = float(meta["ts"])
            extra = meta.get("h") or {}
        except (ValueError, KeyError, TypeError):
            pass
        else:
            if (
                isinstance(message_id, str)
                and isinstance(content_type, str)
                and isinstance(extra, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items())
            ):
                return Message(message_id, topic, payload, content_type, extra, published_at)
    plain = {
        str(k): str(v)
        for k, v in (headers or {}).items()
        if isinstance(k, str) and not k.startswith("Nats-")
    }
    return Message(f"nats-{stream_seq}", topic, payload, "application/octet-stream", plain, ts)


def wire_size(payload: bytes, headers: dict[str, str]) -> int:
    """About what the server counts against its ``max_payload``: the payload and the
    headers block (``NATS/1.0`` line, ``name: value`` lines, blank line)."""
    return len(payload) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 12
