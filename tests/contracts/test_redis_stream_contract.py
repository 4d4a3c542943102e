"""The contract suite over redis+stream, written as a plugin author would."""

from __future__ import annotations

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.contracts import BrokerContract
from tests.conftest import RedisTarget


class TestRedisStreamContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, redis_target: RedisTarget, prefix: str):  # type: ignore[no-untyped-def]
        url = redis_target.url("redis+stream", prefix=prefix)

        def make(**options: object) -> brokerkit.Broker:
            return brokerkit.connect(url, **options)

        return make


class TestRedisStreamAsyncContract(TestRedisStreamContract):
    """The same suite over the asyncio API: ``brokerkit.aio`` and the native
    :class:`~brokerkit.backends.redis.stream.AsyncRedisStreamBroker`."""

    #: The sync class checks this backend's rules in full; this one checks the
    #: asyncio API over them.
    example_share = 0.5

    @pytest.fixture
    def make_broker(self, redis_target: RedisTarget, prefix: str):  # type: ignore[no-untyped-def]
        url = redis_target.url("redis+stream", prefix=prefix)
        return lambda **options: brokerkit.aio.connect(url, **options)
