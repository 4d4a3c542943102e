"""kombu+amqp: a publish that declares its topic anew (someone deleted its queue or
exchange meanwhile) sends again only what is not known stored, never a message an
earlier try had RabbitMQ route and confirm. Real RabbitMQ: the deletions happen
between two frames of the publish, through a hook on the publisher channel. A passive
``exchange.declare`` on that channel (answered after RabbitMQ read, so routed, what
was published before it) makes sure a message was routed; not that it was confirmed:
a confirm comes once the queue took the message, often after that answer. Where the
test needs a message confirmed, it reads the channel's frames until its confirm came."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.kombu_rabbitmq import kombu_broker, rabbitmq, raw_connection

__all__ = ["kombu_broker", "rabbitmq"]

#: How long a read for a confirm waits for a frame: a failure's bound, not a pace.
GUARD = 60.0

Factory = Callable[..., Any]
Hooks = dict[str, dict[int, Callable[[Any], None]]]


def _stored(queue: str) -> list[bytes]:
    bodies = []
    with raw_connection() as connection:
        channel = connection.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            bodies.append(message.body)
        channel.close()
    return bodies


def _unbind(queue: str, exchange: str) -> None:
    with raw_connection() as connection:
        channel = connection.channel()
        channel.queue_unbind(queue, exchange, "")
        channel.close()


def _delete_exchange(exchange: str) -> None:
    with raw_connection() as connection:
        channel = connection.channel()
        channel.exchange_delete(exchange)
        channel.close()


@pytest.fixture
def hooked(kombu_broker: Factory) -> Iterator[tuple[Any, Hooks]]:
    """A broker whose topic ``jobs`` is declared, and hooks: what to do on its
    publisher channel right before (``hooks["before"][n]``) or after its n-th
    ``basic.publish`` (counted from 1, after the topic's first publish)."""
    broker = kombu_broker()
    broker.publish("jobs", "warm")  # declares the topic (once per connection)
    hooks: Hooks = {"before": {}, "after": {}}
    channel = broker._link.publisher()
    original = channel.basic_publish
    count = 0

    def publish(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        if count in hooks["before"]:
            hooks["before"][count](channel)
        result = original(*args, **kwargs)
        if count in hooks["after"]:
            hooks["after"][count](channel)
        return result

    channel.basic_publish = publish
    try:
        yield broker, hooks
    finally:
        channel.basic_publish = original


def test_a_retry_after_returned_then_exchange_gone_sends_only_the_returned(
    hooked: tuple[Any, Hooks],
) -> None:
    broker, hooks = hooked
    prefix = broker.options.prefix
    exchange, queue = f"{prefix}|jobs", f"{prefix}|jobs|default"

    def unbind_after_a(channel: Any) -> None:
        channel.exchange_declare(exchange, "fanout", passive=True)  # 'a' is routed
        _unbind(queue, exchange)  # 'b' and 'c' reach no queue: returned

    def delete(channel: Any) -> None:
        _delete_exchange(exchange)

    hooks["after"][1] = unbind_after_a
    # The second try declares the topic anew, then publishes 'b' (the 4th publish)
    # and 'c' into a deleted exchange: RabbitMQ closes the channel (NotFound).
    hooks["before"][4] = delete
    broker.publish_many("jobs", ["a", "b", "c"])
    # 'a' was stored twice: the retry after the NotFound sent the whole batch again
    assert _stored(queue) == [b"warm", b"a", b"b", b"c"]


def test_a_retry_after_the_exchange_went_mid_batch_sends_only_the_unconfirmed(
    hooked: tuple[Any, Hooks], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, hooks = hooked
    prefix = broker.options.prefix
    exchange, queue = f"{prefix}|jobs", f"{prefix}|jobs|default"

    confirms = broker._link.confirms
    batches: list[range] = []  # (the delivery tags of each publish on the channel)
    counted = confirms.published

    def published(count: int) -> range:
        batches.append(counted(count))
        return batches[-1]

    monkeypatch.setattr(confirms, "published", published)

    def delete_after_a(channel: Any) -> None:
        # 'a' confirmed: its publisher confirm read and noted by the channel's own
        # listeners (a passive declare's answer often comes before it; then 'a' was
        # unconfirmed when the channel closed, and rightly sent again)
        a = batches[-1][:1]
        deadline = time.monotonic() + GUARD  # in all: heartbeats are frames too
        while confirms.waiting(a):
            left = deadline - time.monotonic()
            assert left > 0, "the confirm of 'a' did not come within GUARD"
            channel.connection.drain_events(timeout=left)  # (one frame; raises if none)
        _delete_exchange(exchange)  # 'b' and 'c' go to a deleted exchange

    hooks["after"][1] = delete_after_a
    broker.publish_many("jobs", ["a", "b", "c"])
    # 'a' twice would be a confirmed message sent again
    assert _stored(queue) == [b"warm", b"a", b"b", b"c"]
