"""The contract suite over redis+pubsub, written as a plugin author would.

Pub/Sub declares FANOUT, ORDERED and PATTERNS only, so the suite checks those and
the message basics, and skips the PERSISTENT, ACK, COMPETING, REPLAY and
DEAD_LETTER tests, naming the missing capability.
"""

from __future__ import annotations

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.contracts import BrokerContract
from tests.conftest import RedisTarget


class TestRedisPubSubContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, redis_target: RedisTarget, prefix: str):  # type: ignore[no-untyped-def]
        url = redis_target.url("redis+pubsub", prefix=prefix)

        def make(**options: object) -> brokerkit.Broker:
            return brokerkit.connect(url, **options)

        return make


class TestRedisPubSubAsyncContract(TestRedisPubSubContract):
    """The same suite over the asyncio API (``brokerkit.aio``), native on ``redis.asyncio``."""

    #: The sync class checks this backend's rules in full; this one checks the
    #: asyncio API over them.
    example_share = 0.5

    @pytest.fixture
    def make_broker(self, redis_target: RedisTarget, prefix: str):  # type: ignore[no-untyped-def]
        url = redis_target.url("redis+pubsub", prefix=prefix)
        return lambda **options: brokerkit.aio.connect(url, **options)
