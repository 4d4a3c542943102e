"""How redis+list reads the replies of its scripts (no I/O: shared by the sync and
async broker)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

from brokerkit._broker_async import DEFAULT_GROUP
from brokerkit._inspect import ConsumerInfo, GroupInfo, TopicInfo
from brokerkit._message import Message
from brokerkit.backends.redis import _envelope as envelope
from brokerkit.backends.redis.list.keys import ListKeys

__all__ = ["fetched_messages", "raw_element", "stale_receipts", "topic_info", "unwrap"]


#: The most digits of the count in a ``BKR<n>\n`` wrapper (exact in a Lua number): the
#: scripts read and write no longer count, and an element ``BKR`` + anything else is
#: another program's, raw, as it is (see ``wrapped_count`` in :mod:`.preamble`).
_MAX_COUNT_DIGITS = 15


def unwrap(element: bytes) -> tuple[int, bytes]:
    """(deliveries before this one, the element as published) of an element a fetch
    returned: one handed back after a delivery is wrapped as ``BKR<n>\\n<element>``
    (see :mod:`.scripts`); any other element is returned as it is, with 0."""
    if element.startswith(b"BKR"):
        end = element.find(b"\n", 3, 3 + _MAX_COUNT_DIGITS + 1)
        if end != -1 and element[3:end].isdigit():
            return int(element[3:end]), element[end + 1 :]
    return 0, element


def raw_element(element: bytes, message: Message) -> bool:
    """Whether the scripts count ``element``'s deliveries in the ``attempts`` hash, as
    ``is_raw`` in :mod:`.preamble` tells: neither wrapped as :func:`unwrap` reads it
    nor an envelope to brokerkit's decoder (``message`` is what :func:`fetched_messages`
    read from it). The decoder's raw message carries the whole element as its payload;
    an envelope's payload, or a wrapped element's, is shorter than the element."""
    return len(message.payload) == len(element)


def fetched_messages(
    topic: str, elements: Sequence[bytes], raw_content_type: str | None
) -> tuple[list[Message], dict[int, int] | None]:
    """The messages of the elements a fetch returned, each as
    ``_envelope.decode(topic, inner, raw_content_type)`` reads the element as
    published (:func:`unwrap`), and the attempt of each element that came back,
    by its index (None: every one is a first attempt).

    Never raises, as ``decode`` never does: every leased element must come out as a
    delivery, or it would sit leased, unrenewed, unseen until its lease ran out.
    """
    again: dict[int, int] | None = None
    inner = elements
    if any(map(bytes.startswith, elements, repeat(b"BKR"))):
        inner = list(elements)
        for index, element in enumerate(elements):
            before, inner[index] = unwrap(element)
            if before:
                if again is None:
                    again = {}
                again[index] = before + 1
    try:
        return envelope.decode_many(topic, inner, raw_content_type), again
    except Exception:  # decode_many is total; this guards a regression
        return [envelope.raw_message(topic, e, raw_content_type) for e in inner], again


def stale_receipts(reply: list[bytes] | None) -> set[str]:
    """The receipts a SETTLE or EXTEND call reported stale (their lease had run out)."""
    return {token.decode() for token in reply} if reply else set()


def topic_info(topic: str, keys: ListKeys, heartbeat: float, reply: list[Any]) -> TopicInfo:
    """The :class:`TopicInfo` of ``topic`` from the reply of the INSPECT script.

    :param heartbeat: the broker's heartbeat, in seconds (a consumer's idle time is
        the heartbeat minus what is left of its heartbeat deadline).
    """
    length, dead, now_ms, in_flight, oldest_ms, count = reply[:6]
    consumers = []
    for index in range(6, 6 + 4 * count, 4):
        name, beat_ms, processing, leased = reply[index : index + 4]
        idle = None
        if beat_ms >= 0:
            idle = max((now_ms - (beat_ms - heartbeat * 1000)) / 1000, 0.0)
        consumers.append(
            ConsumerInfo(name.decode(errors="replace"), pending=processing + leased, idle=idle)
        )
    scheduled = reply[6 + 4 * count] if len(reply) > 6 + 4 * count else 0
    group = GroupInfo(DEFAULT_GROUP, pending=in_flight, lag=length, consumers=tuple(consumers))
    waiting_age = None
    next_up = reply[7 + 4 * count] if len(reply) > 7 + 4 * count else None
    if next_up:
        # a message that came back waits wrapped (BKR<n>), with its first publish time
        published = envelope.decode(topic, unwrap(next_up)[1]).published_at
        if published > 0:  # 0: a raw element, written without brokerkit's envelope
            waiting_age = max(now_ms / 1000 - published, 0.0)
    return TopicInfo(
        topic=topic,
        length=length,
        in_flight=in_flight,
        dead_lettered=dead,
        oldest_in_flight_age=None if oldest_ms < 0 else max(now_ms - oldest_ms, 0) / 1000,
        # the one implicit group, once there is something to say of it
        groups=(group,) if consumers or in_flight or length else (),
        oldest_waiting_age=waiting_age,
        scheduled=scheduled,
        details={
            "queue_key": keys.queue,
            "dead_letter_key": keys.dead_letters,
            "deadlines_key": keys.deadlines,
            "expiry_key": keys.expiry,
            "consumers_key": keys.consumers,
            "scheduled_key": keys.scheduled,
            "processing_keys": [keys.processing(c.name) for c in consumers],
            "heartbeat": heartbeat,
        },
    )
