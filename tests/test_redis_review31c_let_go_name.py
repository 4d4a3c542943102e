"""Closing an asyncio Redis broker without its loop (the loop stopped: its close from
another thread cannot run there) marks the broker with a flag of its own. The flag was
named ``_let_go``, the name of the broker's method that a subscription's close calls
(``broker._let_go(subscription)``), so a subscription closing after it raised
"'bool' object is not callable" instead of letting go."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import brokerkit.aio
from brokerkit.backends.redis._loops import _close_without_loop


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream", "redis+pubsub"])
def test_closing_without_the_loop_keeps_the_brokers_let_go_method(
    redis_target: Any, prefix: str, scheme: str
) -> None:
    url = redis_target.url(scheme, prefix=prefix)

    async def made() -> Any:
        return await brokerkit.aio.connect(url)

    broker = asyncio.run(made())  # its loop has ended: it is closed without it
    try:
        _close_without_loop(broker)
        assert callable(broker._let_go)
    finally:
        broker._closed = True  # its loop is gone: no close can run there
