"""A message hook written ``async def`` (natural in an asyncio service) is named as an
error on ``brokerkit.hooks`` when its plugin registers, and is not called.

The message hooks are plain functions, called from the sync and the asyncio API alike
(docs/observability.md). Before, such a hook was called on every message: each call
made a coroutine nobody awaited, so the hook's body never ran (its counts stayed 0), and
the only sign was Python's "coroutine ... was never awaited" RuntimeWarning, per
message, pointing into brokerkit/_hooks.py, none on ``brokerkit.hooks``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import brokerkit
import brokerkit.aio


class AsyncAcks:
    """A plugin whose ack hook is a coroutine function (a mistake)."""

    def __init__(self) -> None:
        self.acked = 0

    @brokerkit.hookimpl
    async def brokerkit_on_ack(self, deliveries: Sequence[Any]) -> None:
        self.acked += len(deliveries)


class Acks:
    """A plugin done right, beside it."""

    def __init__(self) -> None:
        self.acked = 0

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Sequence[Any]) -> None:
        self.acked += len(deliveries)


@pytest.fixture
def plugins() -> Iterator[tuple[AsyncAcks, Acks]]:
    mistaken, right = AsyncAcks(), Acks()
    manager = brokerkit.get_plugin_manager()
    manager.register(right)
    try:
        manager.register(mistaken, name="review30-async-acks")
        try:
            yield mistaken, right
        finally:
            manager.unregister(mistaken)
    finally:
        manager.unregister(right)


def _url() -> str:
    return f"memory://review30-{uuid.uuid4().hex}"


def test_an_async_hook_is_named_at_registration_and_not_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mistaken, right = AsyncAcks(), Acks()
    manager = brokerkit.get_plugin_manager()
    with caplog.at_level(logging.ERROR, logger="brokerkit.hooks"):
        manager.register(mistaken, name="review30-async-acks")
    manager.register(right)
    try:
        errors = [r.getMessage() for r in caplog.records if r.name == "brokerkit.hooks"]
        assert len(errors) == 1, errors
        assert "review30-async-acks" in errors[0]
        assert "brokerkit_on_ack" in errors[0]
        assert "async def" in errors[0]

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")

            async def consume() -> None:
                async with brokerkit.aio.connect(_url()) as broker:
                    subscription = await broker.subscribe("t")
                    await broker.publish("t", 1)
                    delivery = await subscription.receive(timeout=5)
                    assert delivery is not None
                    await delivery.ack()
                    await subscription.close()

            asyncio.run(consume())
            with brokerkit.connect(_url()) as broker, broker.subscribe("t") as subscription:
                broker.publish("t", 1)
                delivery = subscription.receive(timeout=5)
                assert delivery is not None
                delivery.ack()
            gc.collect()
        never_awaited = [w for w in caught if "never awaited" in str(w.message)]
        assert never_awaited == []
        assert right.acked == 2  # the plugin beside it counts as before
        assert mistaken.acked == 0
    finally:
        manager.unregister(mistaken)
        manager.unregister(right)


def test_the_error_is_logged_once_not_on_each_later_registration(
    plugins: tuple[AsyncAcks, Acks], caplog: pytest.LogCaptureFixture
) -> None:
    # every registration refreshes the hooks of all plugins: the mistake was named
    # when its plugin came, and is not named again for another's
    other = Acks()
    with caplog.at_level(logging.ERROR, logger="brokerkit.hooks"):
        brokerkit.get_plugin_manager().register(other)
        brokerkit.get_plugin_manager().unregister(other)
    assert [r for r in caplog.records if r.name == "brokerkit.hooks"] == []
