"""A delivery handed out by iterating a subscription, with a delivery hook installed,
and let go of unsettled (a handler that raised inside ``for``), was kept alive by a
cycle (its hook scope named it, and it named its scope) until the garbage collector's
rare full pass: its lease was renewed meanwhile, and its message did not come back
(review 37, after 9b49dac). Nothing but the application now holds it: it is freed as
the last reference goes, without the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.conftest import registered


class HandlerFailed(Exception):
    """What the handler raised."""


class EndsHooks:
    """A plugin with delivery hooks: every delivery gets a scope."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        pass

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self.outcomes.append(outcome)


@pytest.fixture
def hooks() -> Iterator[EndsHooks]:
    gc.disable()  # what is freed here is freed by its last reference going
    try:
        yield from registered(EndsHooks())
    finally:
        gc.enable()


def test_a_delivery_dropped_inside_for_is_freed_without_the_collector(hooks: EndsHooks) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("jobs", {"x": 1})
        sub = broker.subscribe("jobs", group="g")
        refs = []
        try:
            for delivery in sub:
                refs.append(weakref.ref(delivery))
                raise HandlerFailed
        except HandlerFailed:
            del delivery
        assert len(refs) == 1
        assert refs[0]() is None
        sub.close()
    assert hooks.outcomes == []  # let go unended, as before


def test_an_async_delivery_dropped_inside_async_for_is_freed_without_the_collector(
    hooks: EndsHooks,
) -> None:
    async def main() -> weakref.ref[Any]:
        async with await brokerkit.aio.connect("memory://") as broker:
            await broker.publish("jobs", {"x": 1})
            sub = await broker.subscribe("jobs", group="g")
            refs = []
            try:
                async for delivery in sub:
                    refs.append(weakref.ref(delivery))
                    raise HandlerFailed
            except HandlerFailed:
                del delivery
            assert len(refs) == 1
            # the loop closes the iteration's async generator (which held it) in a
            # task of its own, on a later turn: a bounded number of turns
            for _ in range(100):
                if refs[0]() is None:
                    break
                await asyncio.sleep(0)
            alive = refs[0]() is not None
            await sub.close()
            assert not alive
            return refs[0]

    asyncio.run(main())


def test_a_held_delivery_still_ends_unsettled_at_the_close(hooks: EndsHooks) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("jobs", {"x": 1})
        sub = broker.subscribe("jobs", group="g")
        held = next(iter(sub))
        sub.close()
        assert hooks.outcomes == ["unsettled"]
        assert held is not None
