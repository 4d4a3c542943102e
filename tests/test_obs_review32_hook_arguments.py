"""A plugin that changes the sequence a message hook is handed (a bug: they are the
hook's to read) changes nothing for the application nor for the other plugins: the
ids ``publish_many`` returns, what the next plugin is handed, and the end of each
delivery's hooks stay whole."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio


class Emptying:
    """A buggy plugin: it empties every sequence it is handed."""

    @brokerkit.hookimpl(tryfirst=True)
    def brokerkit_publish_end(self, messages: Any) -> None:
        messages.clear()

    @brokerkit.hookimpl(tryfirst=True)
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        deliveries.clear()

    @brokerkit.hookimpl(tryfirst=True)
    def brokerkit_on_nack(self, deliveries: Any) -> None:
        deliveries.clear()

    @brokerkit.hookimpl(tryfirst=True)
    def brokerkit_on_dead_letter(self, deliveries: Any) -> None:
        deliveries.clear()


class Counting:
    """Counts what it is handed."""

    def __init__(self) -> None:
        self.published = 0
        self.acked = 0
        self.nacked = 0
        self.dead = 0
        self.ends: list[str] = []

    @brokerkit.hookimpl
    def brokerkit_publish_end(self, messages: Any) -> None:
        self.published += len(messages)

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, outcome: str) -> None:
        self.ends.append(outcome)

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.acked += len(deliveries)

    @brokerkit.hookimpl
    def brokerkit_on_nack(self, deliveries: Any) -> None:
        self.nacked += len(deliveries)

    @brokerkit.hookimpl
    def brokerkit_on_dead_letter(self, deliveries: Any) -> None:
        self.dead += len(deliveries)


@pytest.fixture
def counting() -> Iterator[Counting]:
    manager = brokerkit.get_plugin_manager()
    plugins = (Counting(), Emptying())
    for plugin in plugins:
        manager.register(plugin)
    try:
        yield plugins[0]
    finally:
        for plugin in plugins:
            manager.unregister(plugin)


def _url() -> str:
    return f"memory://obs32-arguments-{uuid.uuid4().hex}"


def test_a_plugin_emptying_its_arguments_changes_nothing_else_sync(
    counting: Counting, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, "brokerkit.hooks"),
        brokerkit.connect(_url()) as broker,
        broker.subscribe("t", group="g") as sub,
    ):
        ids = broker.publish_many("t", [1, 2, 3, 4])
        assert len(ids) == 4
        batch = [sub.receive(1) for _ in range(4)]
        assert all(d is not None for d in batch)
        broker.ack(*batch[:2])
        broker.nack(*batch[2:], requeue=False)
    assert sorted(d.id for d in batch if d is not None) == sorted(ids)
    assert (counting.published, counting.acked, counting.nacked) == (4, 2, 2)
    assert counting.dead == 2
    assert sorted(counting.ends) == ["ack", "ack", "dead-letter", "dead-letter"]


def test_a_plugin_emptying_its_arguments_changes_nothing_else_asyncio(
    counting: Counting,
) -> None:
    async def main() -> list[str]:
        async with (
            brokerkit.aio.connect(_url()) as broker,
            await broker.subscribe("t", group="g") as sub,
        ):
            ids = await broker.publish_many("t", [1, 2])
            batch = [await sub.receive(1) for _ in range(2)]
            await broker.ack(*batch)
            return ids

    assert len(asyncio.run(main())) == 2
    assert (counting.published, counting.acked) == (2, 2)
    assert counting.ends == ["ack", "ack"]
