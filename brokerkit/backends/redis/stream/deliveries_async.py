"""Stream entries as deliveries (their grouping for settling is :mod:`.grouping`).

No I/O here either; this module is an asyncio source only because a delivery is an
:class:`~brokerkit.aio.AsyncDelivery` on one side and a :class:`~brokerkit.Delivery`
on the other.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

from brokerkit._delivery_async import AsyncDelivery
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.backends.redis._stream_fields import (
    BODY_FIELD,
    HEADER_FIELD,
    messages_from_headers,
)
from brokerkit.backends.redis.stream.entries import StreamReceipt, decode_entry

__all__ = ["first_deliveries"]


def first_deliveries(
    subscription: AsyncSubscription,
    key: str,
    entries: list[Any],
    raw_content_type: str | None,
    body_field: bytes = BODY_FIELD,
) -> list[AsyncDelivery]:
    """Deliveries (first attempts) of XREADGROUP's ``[[id, [field, value, ...]], ...]``;
    ``body_field`` names the payload's field (see :func:`.entries.decode_entry`)."""
    topic, group, consumer = subscription.topic, subscription.group, subscription.consumer
    fields = [flat for _, flat in entries]
    entry_ids = map(bytes.decode, [raw_id for raw_id, _ in entries])
    receipts = map(
        tuple.__new__,
        repeat(StreamReceipt),
        zip(repeat(key), repeat(group), entry_ids, repeat(consumer)),
    )
    # The usual batch: every entry is brokerkit's header + payload, every header the
    # three lines of a message without headers, read at once (see header_lines);
    # any other batch is read entry by entry.
    headers = [
        flat[1]
        for flat in fields
        if type(flat) is list
        and len(flat) == 4
        and flat[0] == HEADER_FIELD
        and flat[2] == body_field
    ]
    if len(headers) == len(fields):
        batch = messages_from_headers(topic, headers, [flat[3] for flat in fields])
        if batch is not None:
            return AsyncDelivery._first_attempts(batch, subscription, list(receipts))
    messages = [decode_entry(topic, flat, raw_content_type, body_field) for flat in fields]
    return AsyncDelivery._first_attempts(messages, subscription, list(receipts))
