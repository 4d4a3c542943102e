"""kombu's virtual transports (kombu+memory, kombu+redis) beyond the contract suite:
registration, URLs, the names they declare and their clean-up, at-most-once reading,
inspect and purge. kombu+redis runs on the test suite's own redis-server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget

Factory = Callable[..., Any]


@pytest.fixture
def virtual_url(redis_target: RedisTarget) -> Callable[[str, str], str]:
    """``virtual_url(transport, prefix)``: the URL of a virtual transport under test."""

    def url(transport: str, prefix: str) -> str:
        if transport == "memory":
            return f"kombu+memory://?prefix={prefix}"
        target = f"{redis_target.host}:{redis_target.port}/{redis_target.db}"
        return f"kombu+redis://{target}?prefix={prefix}"

    return url


@pytest.fixture
def kombu_virtual(virtual_url: Callable[[str, str], str]) -> Iterator[Factory]:
    """``kombu_virtual(transport, aio=False, **options)``: a broker under this test's
    own prefix. Afterwards, every exchange and queue its brokers declared is deleted."""
    prefix = f"bkt-{uuid.uuid4().hex[:12]}"
    made: list[tuple[str, Any]] = []

    def make(transport: str, *, aio: bool = False, **options: Any) -> Any:
        url = virtual_url(transport, prefix)
        if not aio:
            broker = brokerkit.connect(url, **options)
            made.append((url, broker))
            return broker

        async def opened() -> Any:
            broker = await brokerkit.aio.connect(url, **options)
            made.append((url, broker.sync))  # the thread adapter's sync broker
            return broker

        return opened()

    yield make
    exchanges: set[str] = set()
    queues: set[str] = set()
    for _, broker in made:
        if not broker.closed:
            broker.close()
        exchanges.update(broker.declared[0])
        queues.update(broker.declared[1])
    if made:
        with brokerkit.connect(made[0][0]) as cleaner:
            cleaner.delete(frozenset(exchanges), frozenset(queues))
