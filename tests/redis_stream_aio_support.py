"""Helpers of the redis+stream tests (most of them asyncio): a loop per test, polling
with a deadline, what the server and the loop show of a consumer, and another member's
claim of an entry whose lease ran out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis

import brokerkit.aio
from brokerkit.aio import AsyncDelivery, AsyncSubscription

__all__ = [
    "PROMPT",
    "Open",
    "blocked_reads",
    "claim_once_idle",
    "poll",
    "receive_all",
    "run",
    "stream_tasks",
]

_T = TypeVar("_T")

#: Seconds a test may wait for what should happen "at once"; far below the
#: visibility timeouts the tests use, so a message that only came back after its
#: lease ran out fails the test.
PROMPT = 5.0

#: ``connect(**options)``: use as ``async with connect() as broker``.
Open = Callable[..., brokerkit.aio.Connecting]


def run(coroutine: Coroutine[Any, Any, _T], limit: float = 90.0) -> _T:
    """Run one test's coroutine on a fresh event loop, failing it after ``limit`` seconds."""
    return asyncio.run(asyncio.wait_for(coroutine, limit))


async def poll(check: Callable[[], bool], within: float = PROMPT) -> None:
    """Wait until ``check()`` is true, failing after ``within`` seconds (it may be a
    blocking call: it runs in a thread, so that the loop under test goes on)."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


def claim_once_idle(
    client: redis.Redis, key: str, entry: str, idle_ms: int, within: float = PROMPT
) -> None:
    """Claim ``entry`` of group ``g`` for consumer ``other`` once it has been idle
    ``idle_ms``, as XAUTOCLAIM does after a lease ran out."""
    deadline = time.monotonic() + within
    while not client.xclaim(key, "g", "other", idle_ms, [entry], justid=True):
        assert time.monotonic() < deadline, "the lease never ran out"
        time.sleep(0.02)  # polling with a deadline, not synchronisation


def blocked_reads(client: redis.Redis) -> list[str]:
    """The ids of the clients blocked in XREADGROUP on the server right now."""
    return [c["id"] for c in client.client_list() if c["cmd"] == "xreadgroup" and "b" in c["flags"]]


async def receive_all(
    subscription: AsyncSubscription, count: int, within: float = PROMPT
) -> list[AsyncDelivery]:
    """``count`` deliveries from ``subscription``, all within ``within`` seconds."""
    got: list[AsyncDelivery] = []
    deadline = time.monotonic() + within
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(got)} of {count} deliveries in {within} s"
        delivery = await subscription.receive(timeout=left)
        if delivery is not None:
            got.append(delivery)
    return got


def stream_tasks() -> list[asyncio.Task[Any]]:
    """The redis+stream brokers' background tasks (lease renewal, reaping) still running."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("brokerkit-stream") and not t.done()
    ]
