"""Stream entries as deliveries, and deliveries grouped for settling (one grouping,
:func:`by_member_of`, for acks, nacks and renewals alike).

No I/O here either; this module is an asyncio source only because a delivery is an
:class:`~brokerkit.aio.AsyncDelivery` on one side and a :class:`~brokerkit.Delivery`
on the other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
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
from brokerkit.backends.redis.stream.scripts import text

__all__ = ["by_member", "by_member_of", "entry_chunks", "first_deliveries", "stale_in"]

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


def by_member(deliveries: Sequence[AsyncDelivery]) -> dict[Member, list[AsyncDelivery]]:
    """:func:`by_member_of`, at once for the usual ack: the whole batch of one
    subscription's last read, as it was read (one list comparison, in C, where
    grouping looks at each receipt)."""
    batch = list(deliveries)
    if batch:
        first = batch[0]
        if first.subscription.state.last_read == batch:
            receipt: StreamReceipt = first.receipt
            return {(receipt.key, receipt.group, receipt.consumer): batch}
    return by_member_of(batch)


def entry_chunks(
    deliveries: list[AsyncDelivery], size: int
) -> Iterator[tuple[list[str], list[AsyncDelivery]]]:
    """``deliveries`` in chunks of at most ``size`` entry ids, with their ids; all the
    deliveries of one entry (acked twice in one call) in the same chunk."""
    ids = [d.receipt.entry_id for d in deliveries]
    if len(ids) <= size:
        yield ids, deliveries
        return
    of: dict[str, list[AsyncDelivery]] = {}
    for delivery in deliveries:
        of.setdefault(delivery.receipt.entry_id, []).append(delivery)
    distinct = list(of)
    for start in range(0, len(distinct), size):
        chunk = distinct[start : start + size]
        yield chunk, [d for entry_id in chunk for d in of[entry_id]]


def stale_in(parts: list[list[AsyncDelivery]], replies: Sequence[Any]) -> list[AsyncDelivery]:
    """The deliveries of each part whose entry ids its script replied with (stale)."""
    stale: list[AsyncDelivery] = []
    for part, reply in zip(parts, replies, strict=True):
        if reply:
            gone = {text(i) for i in reply}
            stale += [d for d in part if d.receipt.entry_id in gone]
    return stale
