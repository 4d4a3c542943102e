"""``brokerkit.aio.connect(url)`` kept and entered by more than one ``async with`` at a
time (a module's ``CONNECT = brokerkit.aio.connect(URL)`` that each request handler
enters): each block closes the broker it opened, and only that one. Before, the
``Connecting`` remembered the last broker opened: the first block to end closed the
other block's broker under it (its publish raised ``BrokerClosed``) and left its own
open for ever. And a forgotten ``await`` is told how to write it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest

import brokerkit.aio
from brokerkit.aio import AsyncBroker
from tests.conftest import RedisTarget

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

_T = TypeVar("_T")


async def _guarded(call: Awaitable[_T]) -> _T:
    return await asyncio.wait_for(call, GUARD)


async def _step(generator: AsyncIterator[_T]) -> _T:
    return await anext(generator)


@pytest.fixture(params=["memory", "redis+stream"])
def url(request: pytest.FixtureRequest) -> str:
    name = f"aio-review32-connect-{uuid.uuid4().hex}"
    if request.param == "memory":
        return f"memory://{name}"
    target: RedisTarget = request.getfixturevalue("redis_target")
    return target.url("redis+stream", prefix=name)


def test_blocks_of_two_tasks_close_each_its_own_broker(url: str) -> None:
    connecting = brokerkit.aio.connect(url)

    async def block(entered: asyncio.Event, leave: asyncio.Event) -> AsyncBroker:
        async with connecting as broker:
            entered.set()
            await leave.wait()
            await broker.publish("t", "from a block")  # its broker is open to its end
        return broker

    async def main() -> tuple[AsyncBroker, AsyncBroker]:
        first_in, second_in, first_out, second_out = (asyncio.Event() for _ in range(4))
        first = asyncio.create_task(block(first_in, first_out))
        await _guarded(first_in.wait())
        second = asyncio.create_task(block(second_in, second_out))
        await _guarded(second_in.wait())
        first_out.set()
        one = await _guarded(first)
        second_out.set()
        two = await _guarded(second)
        return one, two

    one, two = asyncio.run(main())
    assert one is not two
    assert one.closed and two.closed


def test_nested_blocks_close_each_its_own_broker(url: str) -> None:
    connecting = brokerkit.aio.connect(url)

    async def main() -> tuple[AsyncBroker, AsyncBroker, bool]:
        async with connecting as outer:
            async with connecting as inner:
                assert inner is not outer
            outer_open = not outer.closed
            await _guarded(outer.publish("t", "after the inner block"))
        return outer, inner, outer_open

    outer, inner, outer_open = asyncio.run(main())
    assert outer_open
    assert outer.closed and inner.closed


def test_a_block_left_after_its_broker_was_closed_closes_nothing_else() -> None:
    """Leaving a block whose broker the application closed itself closes it again
    (nothing happens): never another block's."""
    connecting = brokerkit.aio.connect(f"memory://aio-review32-connect-{uuid.uuid4().hex}")

    async def main() -> None:
        async with connecting as first:
            await first.close()
        async with connecting as second:
            assert not second.closed
        assert second.closed

    asyncio.run(main())


@pytest.mark.parametrize("name", ["publish", "consume", "subscribe", "close", "closed"])
def test_a_forgotten_await_is_told_how_to_write_it(name: str) -> None:
    connecting: Any = brokerkit.aio.connect("memory://")
    with pytest.raises(AttributeError, match=r"await brokerkit\.aio\.connect\(url\)") as caught:
        getattr(connecting, name)
    assert caught.value.name == name
    with pytest.raises(AttributeError, match=r"no attribute 'nothing_such'$"):
        connecting.nothing_such  # noqa: B018


def test_a_block_left_in_another_task_closes_its_own_broker(url: str) -> None:
    """An async generator's block, entered in one task and left in another (as
    pytest-asyncio runs a fixture's setup and teardown), while a block of a task that
    still runs is open: the generator's broker is closed, the other one is not."""
    connecting = brokerkit.aio.connect(url)

    async def fixture() -> AsyncIterator[AsyncBroker]:
        async with connecting as broker:
            yield broker

    async def main() -> tuple[AsyncBroker, AsyncBroker, bool]:
        generator = fixture()
        mine = await _guarded(asyncio.create_task(_step(generator)))  # set up: a task
        inside, leave = asyncio.Event(), asyncio.Event()

        async def other() -> AsyncBroker:
            async with connecting as broker:
                inside.set()
                await leave.wait()
                await broker.publish("t", "still open")
            return broker

        running = asyncio.create_task(other())
        await _guarded(inside.wait())
        with pytest.raises(StopAsyncIteration):  # torn down: another task
            await _guarded(asyncio.create_task(_step(generator)))
        mine_closed = mine.closed
        leave.set()
        return mine, await _guarded(running), mine_closed

    mine, theirs, mine_closed = asyncio.run(main())
    assert mine is not theirs
    assert mine_closed
    assert theirs.closed
