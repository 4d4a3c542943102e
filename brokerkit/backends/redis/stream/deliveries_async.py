"""Stream entries as deliveries, and deliveries grouped for settling (one grouping,
:func:`by_member_of`, for acks, nacks and renewals alike).

No I/O here either; this module is an asyncio source only because a delivery is an
:class:`~brokerkit.aio.AsyncDelivery` on one side and a :class:`~brokerkit.Delivery`
on the other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from brokerkit._delivery_async import AsyncDelivery
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.backends.redis._envelope import BODY_FIELD, HEADER_FIELD, message_from_header
from brokerkit.backends.redis.stream.entries import StreamReceipt, decode_entry

__all__ = ["by_member_of", "first_deliveries"]

Member = tuple[str, str, str]


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
    new_receipt = tuple.__new__
    out: list[AsyncDelivery] = []
    append = out.append
    for raw_id, flat in entries:
        message = None
        if (
            type(flat) is list
            and len(flat) == 4
            and flat[0] == HEADER_FIELD
            and flat[2] == body_field
        ):
            message = message_from_header(topic, flat[1], flat[3])
        if message is None:
            message = decode_entry(topic, flat, raw_content_type, body_field)
        receipt = new_receipt(StreamReceipt, (key, group, raw_id.decode(), consumer))
        append(AsyncDelivery(message, subscription=subscription, attempt=1, receipt=receipt))
    return out


def by_member_of(deliveries: Sequence[AsyncDelivery]) -> dict[Member, list[AsyncDelivery]]:
    """``deliveries`` by (stream key, group, consumer), in order."""
    if deliveries:
        # The usual batch: one subscription's deliveries, whose receipts share the
        # very same strings. Equal strings that are not the same object take the
        # loop below, which groups them the same.
        first: StreamReceipt = deliveries[0].receipt
        key, group, consumer = first.key, first.group, first.consumer
        for delivery in deliveries:
            receipt: StreamReceipt = delivery.receipt
            if (
                receipt.consumer is not consumer
                or receipt.key is not key
                or receipt.group is not group
            ):
                break
        else:
            return {(key, group, consumer): list(deliveries)}
    grouped: dict[Member, list[AsyncDelivery]] = defaultdict(list)
    for delivery in deliveries:
        receipt = delivery.receipt
        grouped[(receipt.key, receipt.group, receipt.consumer)].append(delivery)
    return grouped
