"""redis+stream ``publish_many`` cut off between two of its scripts keeps the class of
the error that cut it off (a lost server is :class:`ConnectionFailed`), while its
message says how many leading messages were stored. Against a private redis-server
that is shut down just before the batch's second script."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._capabilities import Capability
from brokerkit.backends.redis.stream.options import PUBLISH_CHUNK
from brokerkit.backends.redis.stream.partial import partial_batch
from brokerkit.exceptions import (
    BrokerError,
    ConnectionFailed,
    PermissionDenied,
    ReplicationTimeout,
    Unsupported,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_stream

TOTAL = 2 * PUBLISH_CHUNK + 1000


class _ShutDownBeforeSecond:
    """Wraps the broker's real publish script: before its second run, the server is
    killed (the script then runs against no server)."""

    def __init__(self, script: Any, server: RedisServer) -> None:
        self.script = script
        self.server = server
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.server.kill()
        return self.script(*args, **kwargs)


def _check(error: BaseException) -> None:
    assert isinstance(error, ConnectionFailed), repr(error)
    assert f"the first {PUBLISH_CHUNK} of {TOTAL} messages" in str(error), str(error)
    assert error.__cause__ is not None


def test_a_batch_cut_off_by_a_lost_server_raises_connection_failed(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+stream") + "?reconnect_timeout=0.5"
    with brokerkit.connect(url) as broker:
        broker._scripts.publish = _ShutDownBeforeSecond(  # type: ignore[attr-defined]
            broker._scripts.publish,  # type: ignore[attr-defined]
            redis_server,
        )
        with pytest.raises(ConnectionFailed) as caught:
            broker.publish_many("orders", [b"m%d" % i for i in range(TOTAL)])
        _check(caught.value)


def test_async_a_batch_cut_off_by_a_lost_server_raises_connection_failed(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+stream") + "?reconnect_timeout=0.5"

    async def main() -> None:
        async with await brokerkit.aio.connect(url) as broker:
            broker._scripts.publish = _ShutDownBeforeSecond(  # type: ignore[attr-defined]
                broker._scripts.publish,  # type: ignore[attr-defined]
                redis_server,
            )
            with pytest.raises(ConnectionFailed) as caught:
                await broker.publish_many("orders", [b"m%d" % i for i in range(TOTAL)])
            _check(caught.value)

    asyncio.run(main())


@pytest.mark.parametrize(
    "error",
    [
        BrokerError("boom"),
        ConnectionFailed("gone"),
        ReplicationTimeout("lagged", acknowledged=1, wanted=2),
        PermissionDenied("no EVALSHA", command="EVALSHA"),
        Unsupported("redis+stream", Capability(0), "do that"),
    ],
)
def test_the_partial_error_keeps_the_class_and_attributes_of_the_cause(
    error: BrokerError,
) -> None:
    partial = partial_batch(error, "t", PUBLISH_CHUNK, TOTAL, held=False)
    assert type(partial) is type(error)
    assert vars(partial) == vars(error)
    assert str(partial).startswith(str(error) + " -- publish_many stored the first")
