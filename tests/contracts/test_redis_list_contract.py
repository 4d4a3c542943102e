"""The contract suite over redis+list, written as a plugin author would."""

from __future__ import annotations

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.list import moves as list_moves
from brokerkit.backends.redis.list import moves_async as list_moves_async
from brokerkit.backends.redis.list import woken as list_woken
from brokerkit.backends.redis.list import woken_async as list_woken_async
from brokerkit.contracts import BrokerContract
from tests.conftest import RedisTarget


class TestRedisListContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, redis_target: RedisTarget, prefix: str):  # type: ignore[no-untyped-def]
        url = redis_target.url("redis+list", prefix=prefix)

        def make(**options: object) -> brokerkit.Broker:
            return brokerkit.connect(url, **options)

        return make


class TestRedisListAsyncContract(TestRedisListContract):
    """The same suite over the asyncio API (``brokerkit.aio``), native on redis.asyncio."""

    #: The sync class checks this backend's rules in full; this one checks the
    #: asyncio API over them.
    example_share = 0.5

    @pytest.fixture
    def make_broker(self, redis_target: RedisTarget, prefix: str):  # type: ignore[no-untyped-def]
        url = redis_target.url("redis+list", prefix=prefix)
        return lambda **options: brokerkit.aio.connect(url, **options)


class _ByMoves:
    """Every fetch that knows its elements' size (all but a consumer's first, which a
    BLMOVE did not wake) leases by moves, as fetches of elements of ``MOVE_BYTES`` or
    more do (see FETCH, *Moves*): the suite's bodies are small."""

    @pytest.fixture(autouse=True)
    def _by_moves(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for module in (list_moves, list_moves_async, list_woken, list_woken_async):
            monkeypatch.setattr(module, "MOVE_BYTES", 1)


class TestRedisListByMovesContract(_ByMoves, TestRedisListContract):
    """The suite over fetches by moves."""

    example_share = 0.5


class TestRedisListByMovesAsyncContract(_ByMoves, TestRedisListAsyncContract):
    """The same over the asyncio API, where a receive can be cancelled mid-fetch."""

    example_share = 0.3
