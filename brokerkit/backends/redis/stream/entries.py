"""Stream entries as deliveries, and deliveries grouped for settling (one grouping,
:func:`by_member_of`, for acks, nacks and renewals alike).

Building deliveries is the hot loop of every redis+stream consumer: it runs once
per message, so the common entry (``bk1`` header + ``body``) is decoded inline
from XREADGROUP's flat reply, without redis-py building a dict per entry first.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from brokerkit._delivery import Delivery
from brokerkit._message import Message
from brokerkit._subscription import Subscription
from brokerkit.backends.redis._envelope import (
    BODY_FIELD,
    HEADER_FIELD,
    decode_fields,
    message_from_header,
    raw_message,
)
from brokerkit.backends.redis._stream_scripts import pairs

__all__ = [
    "StreamReceipt",
    "by_member_of",
    "decode_entry",
    "first_deliveries",
    "stale_of",
    "unparsed",
]

Member = tuple[str, str, str]


class StreamReceipt(NamedTuple):
    """Names one delivery: the entry, and the group member it was delivered to."""

    key: str
    group: str
    entry_id: str
    consumer: str


def decode_entry(
    topic: str, flat: list[Any] | dict[bytes, bytes] | None, raw_content_type: str | None
) -> Message:
    """The message in an entry's flat ``[field, value, ...]`` list (or field dict).

    Never raises: an entry whose brokerkit metadata does not parse (another
    program wrote ``id``, ``ct`` and ``ts`` fields that are not ours, a header
    that is not JSON, bytes that are not UTF-8) is a *raw* message whose payload
    is a JSON object of its fields, so that one poison entry can never jam its
    group; its consumer sees it, and can dead-letter it.
    """
    if type(flat) is list and len(flat) == 4 and flat[0] == HEADER_FIELD and flat[2] == BODY_FIELD:
        message = message_from_header(topic, flat[1], flat[3])
        if message is not None:
            return message
    fields = flat if isinstance(flat, dict) else pairs(flat or [])
    try:
        return decode_fields(topic, fields, raw_content_type)
    except Exception:  # malformed metadata: the entry is delivered as it is
        plain = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        payload = json.dumps(plain).encode()
        return raw_message(topic, payload, raw_content_type or "application/json")


def first_deliveries(
    subscription: Subscription, key: str, entries: list[Any], raw_content_type: str | None
) -> list[Delivery]:
    """Deliveries (first attempts) of XREADGROUP's ``[[id, [field, value, ...]], ...]``."""
    topic, group, consumer = subscription.topic, subscription.group, subscription.consumer
    new_receipt = tuple.__new__
    out = []
    for raw_id, flat in entries:
        message = None
        if (
            type(flat) is list
            and len(flat) == 4
            and flat[0] == HEADER_FIELD
            and flat[2] == BODY_FIELD
        ):
            message = message_from_header(topic, flat[1], flat[3])
        if message is None:
            message = decode_entry(topic, flat, raw_content_type)
        receipt = new_receipt(StreamReceipt, (key, group, raw_id.decode(), consumer))
        out.append(Delivery(message, subscription=subscription, attempt=1, receipt=receipt))
    return out


def unparsed(response: Any, **options: Any) -> Any:
    """A redis-py response callback that keeps the reply as the server sent it."""
    return response


def by_member_of(deliveries: Sequence[Delivery]) -> dict[Member, list[Delivery]]:
    """``deliveries`` by (stream key, group, consumer), in order."""
    grouped: dict[Member, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        receipt: StreamReceipt = delivery.receipt
        grouped[(receipt.key, receipt.group, receipt.consumer)].append(delivery)
    return grouped


def stale_of(by_member: dict[Member, list[Delivery]], replies: Sequence[Any]) -> list[Delivery]:
    """The deliveries whose entry ids the scripts run per member (in
    ``by_member``'s order) replied with as not held by that member."""
    stale = []
    for ds, reply in zip(by_member.values(), replies, strict=True):
        if reply:
            ids = {i.decode() if isinstance(i, bytes) else i for i in reply}
            stale += [d for d in ds if d.receipt.entry_id in ids]
    return stale
