"""A plugin whose end hook is a pluggy wrapper keeps the start/end pairing promise:
unregistered while its delivery or publish is open, it still ends it; a plugin
registered meanwhile is not handed, through that wrapper, the end of an operation it
did not see start."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio


class Wrapping:
    """A plugin whose end hooks are pluggy wrappers (new style and old style)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @brokerkit.hookimpl
    def brokerkit_publish_start(self, scope: dict[str, Any]) -> None:
        scope["wrapping"] = True

    @brokerkit.hookimpl(wrapper=True)
    def brokerkit_publish_end(self, scope: dict[str, Any]) -> Generator[None, None, None]:
        yield
        self.calls.append(f"publish_end:{scope.get('wrapping')}")

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, scope: dict[str, Any]) -> None:
        scope["wrapping"] = True

    @brokerkit.hookimpl(hookwrapper=True)
    def brokerkit_deliver_end(self, outcome: str, scope: dict[str, Any]) -> Iterator[None]:
        yield
        self.calls.append(f"deliver_end:{outcome}:{scope.get('wrapping')}")


class Late:
    """A plain plugin that writes down the ends it is handed."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @brokerkit.hookimpl
    def brokerkit_publish_end(self, scope: dict[str, Any]) -> None:
        self.calls.append("publish_end")

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, outcome: str) -> None:
        self.calls.append(f"deliver_end:{outcome}")


@pytest.fixture
def manager() -> Iterator[Any]:
    manager = brokerkit.get_plugin_manager()
    before = set(manager.get_plugins())
    yield manager
    for plugin in set(manager.get_plugins()) - before:
        manager.unregister(plugin)


def _url() -> str:
    return f"memory://obs32-wrapper-{uuid.uuid4().hex}"


def test_a_wrapper_unregistered_while_its_delivery_is_open_still_ends_it(manager: Any) -> None:
    wrapping = Wrapping()
    manager.register(wrapping)
    with brokerkit.connect(_url()) as broker, broker.subscribe("t", group="g") as sub:
        broker.publish("t", 1)
        delivery = sub.receive(1)
        assert delivery is not None
        manager.unregister(wrapping)
        delivery.ack()
    assert wrapping.calls == ["publish_end:True", "deliver_end:ack:True"]


def test_a_wrapper_unregistered_while_its_publish_is_open_still_ends_it(manager: Any) -> None:
    wrapping = Wrapping()
    manager.register(wrapping)

    class Unregistering:
        """Unregisters the wrapping plugin from inside the publish (its start)."""

        @brokerkit.hookimpl(trylast=True)
        def brokerkit_publish_start(self) -> None:
            manager.unregister(wrapping)

    manager.register(Unregistering())
    with brokerkit.connect(_url()) as broker:
        broker.publish("t", 1)
    assert wrapping.calls == ["publish_end:True"]


def test_a_plugin_registered_meanwhile_gets_no_end_through_a_wrapper(manager: Any) -> None:
    wrapping = Wrapping()
    manager.register(wrapping)
    late = Late()
    with brokerkit.connect(_url()) as broker, broker.subscribe("t", group="g") as sub:
        broker.publish("t", 1)
        delivery = sub.receive(1)
        assert delivery is not None
        manager.register(late)
        delivery.ack()
        assert late.calls == []
        broker.publish("t", 2)
        later = sub.receive(1)
        assert later is not None
        later.ack()
    assert late.calls == ["publish_end", "deliver_end:ack"]
    assert wrapping.calls == ["publish_end:True", "deliver_end:ack:True"] * 2


def test_a_wrapper_unregistered_while_an_asyncio_delivery_is_open_still_ends_it(
    manager: Any,
) -> None:
    wrapping = Wrapping()
    manager.register(wrapping)

    async def main() -> None:
        async with (
            brokerkit.aio.connect(_url()) as broker,
            await broker.subscribe("t", group="g") as sub,
        ):
            await broker.publish("t", 1)
            delivery = await sub.receive(1)
            assert delivery is not None
            manager.unregister(wrapping)
            await delivery.ack()

    asyncio.run(main())
    assert wrapping.calls == ["publish_end:True", "deliver_end:ack:True"]
