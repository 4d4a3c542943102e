"""``prefetch_bytes`` bounds a fetch by the size of the largest message seen: once the
subscription has seen messages, and all of them were empty (b"" signals, a str ""),
any number of them fits. It fetched one message a round trip for ever instead, as if
it had seen none (the size 0 was taken for "nothing seen yet")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import brokerkit


def _second_fetch_takes_a_batch(broker: Any, body: bytes) -> None:
    broker.publish_many("signals", [body] * 10)
    with broker.subscribe("signals", prefetch=5, prefetch_bytes=1000) as subscription:
        first = subscription.receive(5)
        assert first is not None
        assert subscription.buffered == 0  # the first fetch takes one
        second = subscription.receive(5)
        assert second is not None
        assert subscription.buffered == 4  # then prefetch, as 5 of them fit
        rest = [subscription.receive(0) for _ in range(4)]
        assert None not in rest
        broker.ack(first, second, *rest)


@pytest.mark.parametrize("body", [b"", b"0123456789"])
def test_memory_fetches_a_batch_of_empty_messages(body: bytes) -> None:
    with brokerkit.connect("memory://") as broker:
        _second_fetch_takes_a_batch(broker, body)


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list"])
def test_redis_fetches_a_batch_of_empty_messages(
    redis_broker: Callable[..., Any], scheme: str
) -> None:
    _second_fetch_takes_a_batch(redis_broker(scheme), b"")
