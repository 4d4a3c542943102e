"""Publishing on kombu+amqp: ``basic.publish`` on the publishing link's channel under
publisher confirms, which returns once RabbitMQ has taken every message (a batch is
sent at once and its confirms awaited together); dead letters in a transaction
instead, committed once RabbitMQ has read them (:mod:`._transaction`).

A message's AMQP *content header* (its properties, the ``brokerkit`` header with the
headers among them) travels in one frame, which RabbitMQ closes the connection over
(``FRAME_ERROR``); the body is split into as many frames as it needs. So every message
of a publish is encoded first, and one whose content header would not fit in a frame
of the connection (its ``frame_max``, as negotiated, less 8 bytes of framing), or
whose dead letter's would not (room is kept for the headers a dead letter adds), is
refused with :class:`~brokerkit.exceptions.InvalidMessage` before anything is sent.
The size is py-amqp's own encoding of that header, measured where a cheap bound does
not already show that it fits.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import amqp  # type: ignore[import-untyped]
import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit._message import Message
from brokerkit.backends.kombu._blocked import Expired, PublishTimeout
from brokerkit.backends.kombu._envelope import HEADER, check_content_type_size, encode
from brokerkit.backends.kombu._link import Link
from brokerkit.exceptions import BrokerError, ConnectionFailed, InvalidMessage

__all__ = [
    "ExchangeGone",
    "Prepared",
    "Refused",
    "content_header_size",
    "dead_letter_headers",
    "fit_reason",
    "over_frame",
    "publish",
    "publish_each",
    "send_prepared",
]

#: A content header's payload before its properties: class id, weight and body size.
HEADER_FIELDS = 12
#: What a frame adds to its payload: type, channel and size (7 bytes), and its end octet.
FRAME_OVERHEAD = 8
#: How many times a publish declares its topic anew when someone deleted a queue or
#: exchange of it (see :func:`_send_declared`).
_DECLARE_TRIES = 2
#: A size no bound is given for (a value :func:`_bound` does not know): measured.
_UNBOUNDED = 1 << 62
#: The digits of ``x-deliveries`` a publish keeps room for.
_DELIVERIES_DIGITS = 10
#: What ends a dead letter's reason cut to fit in one frame (as on nats).
TRUNCATED = "[truncated]"


class Prepared(NamedTuple):
    """A message, as py-amqp sends it, and at least its content header's size."""

    message: Message
    raw: Any
    at_most: int


def publish(link: Link, topic: str, messages: Sequence[Message]) -> None:
    """Publish ``messages`` to ``topic``'s exchange (declared, with its default group's
    queue, if this link has not yet), confirmed.

    :raises InvalidMessage: a content type AMQP cannot carry, headers that do not fit
        in one frame of the connection, or a message larger than RabbitMQ's
        ``max_message_size`` (once a refusal told it): nothing was published.
    """
    for content_type in {m.content_type for m in messages}:
        check_content_type_size(content_type)
    limit = link.max_message_size  # (known once RabbitMQ refused a message)
    too_large = [m for m in messages if limit is not None and len(m.payload) > limit]
    if too_large:
        message = too_large[0]
        raise InvalidMessage(
            f"message {message.id} is {len(message.payload):,} bytes, more than the "
            f"max_message_size of RabbitMQ on {link.url} ({limit:,} bytes); nothing "
            "was published. Store large payloads elsewhere and publish a reference, "
            "or raise max_message_size in RabbitMQ's configuration"
        )
    prepared = _prepare(messages)

    def send() -> None:
        _check_frames(link, prepared, dead_letter_of=topic)  # (before declaring)
        _send_declared(link, topic, link.names.exchange(topic), prepared)

    link.call(send)


def send_prepared(
    link: Link,
    topic: str,
    exchange: str,
    messages: Sequence[Message],
    send: Callable[[Link, str, Sequence[Prepared]], list[Prepared]],
) -> None:
    """Prepare ``messages`` and check that their headers fit in one frame of the
    connection, then send them to ``exchange`` by ``send`` (``topic`` declared, see
    :func:`_send_declared`; call within :meth:`Link.call`).

    :raises InvalidMessage: the headers of one do not fit: nothing was sent.
    """
    prepared = _prepare(messages)
    _check_frames(link, prepared)
    _send_declared(link, topic, exchange, prepared, send)


def _send_declared(
    link: Link,
    topic: str,
    exchange: str,
    prepared: Sequence[Prepared],
    send: Callable[[Link, str, Sequence[Prepared]], list[Prepared]] | None = None,
) -> None:
    """Declare ``topic`` (if this link has not yet) and send ``prepared`` to
    ``exchange``, confirmed. A link declares a name once per connection, and someone
    else (an operator, another process's ``delete``) may have deleted it since: a
    message RabbitMQ returns (published ``mandatory``: it reached no queue, its
    topic's default queue is gone) or a batch whose exchange is gone (RabbitMQ closes
    the channel) is sent again once the topic is declared anew and the queues of the
    link's groups of it are bound again (:meth:`Topology.bind_groups_again`), rather
    than confirmed into nowhere or refused.

    Only what is not known stored is sent again: the messages RabbitMQ returned,
    and, when the exchange is gone mid-batch, those whose confirms were still due
    when the channel closed. Some of those may be stored all the same (RabbitMQ
    routes a message when it reads it and confirms it later; AMQP does not say
    which were routed): sent again, such a message is stored twice, with its id
    (at least once, as any resend after a lost confirm). One confirmed is never sent
    again.

    :raises BrokerError: still routed to no queue after declaring it all anew
        :data:`_DECLARE_TRIES` times (something keeps deleting it).
    """
    send = send or _send
    batch = list(prepared)
    # (an exchange found gone took its groups' bindings with it; a message returned
    # may have found one someone else declared anew, bound to nothing)
    rebind = False
    for tries_left in reversed(range(_DECLARE_TRIES + 1)):
        try:
            try:
                link.ensure_topic(topic)
                if rebind:
                    link.bind_groups_again(topic)
                    rebind = False
            except amqp.exceptions.NotFound as exc:  # (binding to a deleted exchange)
                link.drop_publisher(exc)
                raise ExchangeGone(exc, batch) from exc  # nothing of it sent
            batch = send(link, exchange, batch)
        except ExchangeGone as gone:
            # A declared exchange is gone: RabbitMQ closed the channel. What it
            # confirmed before (routed to a queue) is stored: only the rest of this
            # try's batch is sent again, never a message an earlier try stored.
            if not tries_left:
                raise gone.error from None
            link.forget(topic)
            rebind = True
            batch = gone.unstored
            continue
        if not batch:
            return
        if not tries_left:
            raise BrokerError(
                f"RabbitMQ on {link.url} routed {len(batch)} message(s) published to "
                f"{exchange!r} to no queue, although its topic was declared anew "
                f"{_DECLARE_TRIES} times: something keeps deleting it; those messages "
                "were not stored"
            )
        link.forget(topic)
        rebind = True  # (routed to no queue: its exchange may be one declared anew)


class ExchangeGone(Exception):
    """Internal: RabbitMQ closed the publisher channel, the exchange published to
    being gone (``error``, its ``NotFound``); ``unstored`` are the messages of the
    batch it had not confirmed (nor returned) by then: not stored."""

    def __init__(self, error: BaseException, unstored: list[Prepared]) -> None:
        super().__init__(str(error))
        self.error = error
        self.unstored = unstored


class Refused(ConnectionFailed):
    """RabbitMQ refused messages of a publish (``basic.nack``): a queue they were routed
    to is full and rejects publishes (``overflow: reject-publish``), or failed."""


def content_header_size(raw: Any) -> int:
    """How many bytes the content header of ``raw`` (a py-amqp message) takes in its
    frame, less the frame's own 8: its fixed fields and its properties as py-amqp
    encodes them (the frame writer's own call)."""
    return HEADER_FIELDS + len(raw._serialize_properties())


def _prepare(messages: Sequence[Message]) -> list[Prepared]:
    prepared = []
    for message in messages:
        body, properties, headers = encode(message)
        raw = amqp.Message(
            body,
            content_type=message.content_type,
            content_encoding="binary",
            application_headers=headers,
            **properties,
        )
        prepared.append(Prepared(message, raw, _header_bound(raw.properties)))
    return prepared


#: The attribute :func:`_check_frames` sets on the InvalidMessage it raises.
_OVER_FRAME = "brokerkit_over_frame"


def over_frame(error: InvalidMessage) -> bool:
    """Whether ``error`` refused a message whose content header does not fit in one
    frame of the connection (not another refusal)."""
    return getattr(error, _OVER_FRAME, False) is True


def dead_letter_headers(topic: str) -> dict[str, str]:
    """The headers a dead letter of a message of ``topic`` adds, at their largest
    for brokerkit's own reasons (a caller's ``reason`` may be longer): what a
    publish keeps room for in the frame."""
    return {
        "x-dead-letter-reason": "max_deliveries",
        "x-original-topic": topic,
        "x-deliveries": "9" * _DELIVERIES_DIGITS,
    }


def fit_reason(link: Link, letter: Message, key: str) -> Message:
    """``letter`` (a dead letter) with its ``key`` header (the reason) cut to as much
    of it as fits in one frame of the link's connection, followed by
    :data:`TRUNCATED` (call within :meth:`Link.call`: connected). As it is if it fits
    whole, or if not even :data:`TRUNCATED` alone would: the message's own headers
    are then in the way, not the reason (the publish refuses it, :func:`over_frame`).

    A publish keeps room for the reason ``max_deliveries`` only
    (:func:`dead_letter_headers`); a Worker's (the handler's error, up to 1,000
    characters) or a ``nack(reason=...)`` may be longer.
    """
    room = link.frame_max() - FRAME_OVERHEAD
    if _prepare([letter])[0].at_most <= room:
        return letter

    def with_reason(text: str) -> tuple[Message, int]:
        cut = dataclasses.replace(letter, headers={**letter.headers, key: text})
        return cut, content_header_size(_prepare([cut])[0].raw)

    reason = letter.headers[key]
    if with_reason(reason)[1] <= room or with_reason(TRUNCATED)[1] > room:
        return letter
    # The longest part of the reason that fits, marked: the size grows with the part.
    low, high = 0, len(reason) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if with_reason(reason[:middle] + TRUNCATED)[1] <= room:
            low = middle
        else:
            high = middle - 1
    return with_reason(reason[:low] + TRUNCATED)[0]


def _check_frames(
    link: Link, prepared: Sequence[Prepared], *, dead_letter_of: str | None = None
) -> None:
    """Refuse the batch if the content header of one of its messages does not fit in
    one frame of the link's connection (call within :meth:`Link.call`: connected);
    with ``dead_letter_of`` (the topic of a publish), if the content header of its
    dead letter (:func:`dead_letter_headers` added) would not: one that could not be
    dead-lettered with its headers is not published.

    :raises InvalidMessage: the first that does not fit, with its size and the limit
        (:func:`over_frame` tells it from other refusals).
    """
    frame_max = link.frame_max()
    room = frame_max - FRAME_OVERHEAD
    added = {} if dead_letter_of is None else dead_letter_headers(dead_letter_of)
    # (in the JSON of the header: ,"key":"value" for each, 6 bytes a char at most)
    extra = sum(6 * (len(k) + len(v) + 6) for k, v in added.items())
    for message, raw, at_most in prepared:
        if at_most + extra <= room:
            continue
        size = content_header_size(raw)
        dead = size
        if added:
            letter = dataclasses.replace(message, headers={**message.headers, **added})
            dead = content_header_size(_prepare([letter])[0].raw)
        if max(size, dead) > room:
            count = len(message.headers)
            with_dead = (
                f", {dead:,} bytes with the {len(added)} header(s) a dead letter of it "
                f"adds ({', '.join(added)})"
                if dead > size
                else ""
            )
            refused = InvalidMessage(
                f"the headers of message {message.id} do not fit in one AMQP frame: its "
                f"content header (the AMQP properties, with the {count:,} header(s) as "
                f"JSON in the {HEADER!r} header) is {size:,} bytes{with_dead}, and "
                f"RabbitMQ on {link.url} takes at most {room:,} (its frame_max of "
                f"{frame_max:,} bytes, less 8 bytes of framing); nothing was published. "
                "Send fewer or smaller headers and carry large data in the body (which "
                "may be split over many frames), or raise frame_max in RabbitMQ's "
                "configuration"
            )
            setattr(refused, _OVER_FRAME, True)
            raise refused


def _header_bound(properties: Mapping[str, Any]) -> int:
    """At least the size :func:`content_header_size` measures, without encoding: the
    fixed fields and property flags, and each property's :func:`_bound`."""
    size = HEADER_FIELDS + 2
    for value in properties.values():
        if value is not None:  # (py-amqp leaves None out)
            size += _bound(value)
    return size


def _bound(value: Any) -> int:
    """At least the bytes py-amqp encodes ``value`` in, as a property or a table
    entry's value (with its type octet and length): a character takes at most 4 bytes
    in UTF-8, a number or time at most 8."""
    if isinstance(value, str):
        return 5 + 4 * len(value)
    if isinstance(value, (bool, int, float)):
        return 9
    if isinstance(value, Mapping):
        size = 5
        for key, item in value.items():
            if not isinstance(key, str):
                return _UNBOUNDED
            size += 1 + 4 * len(key) + _bound(item)
        return size
    return _UNBOUNDED


def publish_each(channel: Any, deadline: Any, exchange: str, prepared: Sequence[Prepared]) -> None:
    """``basic_publish`` each of ``prepared`` to ``exchange``, ``mandatory``, on
    ``channel``, each within ``deadline`` (:meth:`.Link.deadline`)."""
    for item in prepared:
        deadline.run(
            functools.partial(
                channel.basic_publish,
                item.raw,
                exchange=exchange,
                routing_key="",
                mandatory=True,
            )
        )


def _send(link: Link, exchange: str, prepared: Sequence[Prepared]) -> list[Prepared]:
    """Send ``prepared``, ``mandatory``, and wait for their confirms; return those
    RabbitMQ returned, routed to no queue (confirmed all the same, not stored)."""
    channel = link.publisher()
    # Counted before sending: py-amqp may read a confirm during the next publish.
    tags = link.confirms.published(len(prepared))
    link.confirms.take_returned()  # (none is left over: each comes before its confirm)
    deadline = link.deadline()
    try:
        publish_each(channel, deadline, exchange, prepared)
        while link.confirms.waiting(tags):
            deadline.run(link.read_frame)  # (the confirms' listeners note them)
    except Expired:
        due = len(link.confirms.unsettled(tags))
        blocked = link.blocked.reason
        link.abandon()  # (a frame may be half written; a channel close would wait)
        link.timed_out = time.monotonic()
        raise PublishTimeout(
            f"RabbitMQ on {link.url} did not confirm {due} of {len(prepared)} "
            f"message(s) published to {exchange!r} within publish_timeout="
            f"{deadline.seconds:g}s: "
            + (
                f"it blocked the connection ({blocked}): a memory or disk alarm stops "
                "it reading from publishers until the alarm clears (see its log)"
                if blocked is not None
                else "it took no more of them, or did not answer (overloaded?)"
            )
            + "; those may or may not have been stored: publish them again to have them "
            "at least once. The connection was dropped: the next call connects anew"
        ) from None
    except amqp.exceptions.NotFound as exc:
        # The exchange is gone: RabbitMQ closed the channel. What it confirmed, it
        # routed (those it returned excepted); what it had not confirmed yet it may or
        # may not have routed: sent again, at least once.
        unsettled = link.confirms.unsettled(tags)
        returned = link.confirms.take_returned()
        link.drop_publisher(exc)
        unstored = [
            item
            for tag, item in zip(tags, prepared, strict=True)
            if tag in unsettled or item.message.id in returned
        ]
        raise ExchangeGone(exc, unstored) from exc
    except Exception as exc:
        link.drop_publisher(exc)  # its confirms no longer add up
        raise
    except BaseException:
        # Interrupted (Ctrl-C): a frame may be half written, and a channel close
        # would wait on a server that may not read (an alarm): drop the connection.
        link.abandon()
        raise
    link.timed_out = None  # (confirmed: no alarm holds this link's publishes now)
    returned = link.confirms.take_returned()
    refused = link.confirms.refused(tags)
    if refused:
        raise Refused(
            f"RabbitMQ refused {len(refused)} of {len(prepared)} message(s) published "
            f"to {exchange!r} (basic.nack: a queue bound to it is full and rejects "
            "publishes, as its overflow setting reject-publish says, or had an internal "
            "error); the others of its queues may have taken them: publish them again "
            "once it has room"
        )
    return [item for item in prepared if item.message.id in returned]
