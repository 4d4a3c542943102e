"""The shared Redis plumbing against a real server: what is retried, what is not."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import brokerkit
from brokerkit import BrokerError, BrokerURL, ConnectionFailed
from brokerkit.backends.redis._client import Reconnector
from brokerkit.backends.redis._connection import translate_errors
from tests.conftest import RedisTarget


def test_a_script_lost_to_a_restart_is_retried(redis_target: RedisTarget) -> None:
    """A server restarted between redis-py loading a script and running it answers
    NOSCRIPT; that is transient, and the retry (which reloads the script) succeeds."""
    client = redis_target.client()
    calls: list[int] = []

    def run() -> int:
        calls.append(1)
        if len(calls) == 1:
            return int(client.evalsha("0" * 40, 0))  # a real NOSCRIPT from the server
        return int(client.eval("return 7", 0))

    url = BrokerURL.parse(redis_target.url("redis+stream"))
    assert Reconnector(url, timeout=5).call(run) == 7
    assert len(calls) == 2
    with pytest.raises(ConnectionFailed, match="lost brokerkit's scripts"), translate_errors(url):
        client.evalsha("0" * 40, 0)
    client.close()


def test_other_error_replies_are_not_retried(redis_target: RedisTarget) -> None:
    client = redis_target.client()
    calls: list[int] = []

    def run() -> object:
        calls.append(1)
        return client.execute_command("NO-SUCH-COMMAND")

    url = BrokerURL.parse(redis_target.url("redis+stream"))
    with pytest.raises(BrokerError, match="answered with an error") as excinfo:
        Reconnector(url, timeout=5).call(run)
    assert not isinstance(excinfo.value, ConnectionFailed)
    assert isinstance(excinfo.value.__cause__, redis.ResponseError)
    assert calls == [1]
    client.close()


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream", "redis+pubsub"])
def test_a_body_redis_cannot_store_is_refused_before_it_is_sent(
    scheme: str, redis_broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = redis_broker(scheme)
    # Redis stores at most 512 MB in a value; the envelope needs room too.
    assert type(broker).max_payload_bytes <= 512 * 1024 * 1024 - 1024
    monkeypatch.setattr(type(broker), "max_payload_bytes", 1000)
    with pytest.raises(brokerkit.InvalidMessage, match=r"1,001 bytes"):
        broker.publish_many("big", [b"fits", b"x" * 1001])
    if scheme != "redis+pubsub":
        assert broker.inspect("big").length == 0  # not even the first one


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream", "redis+pubsub"])
def test_a_server_never_reached_is_could_not_connect_at_once_not_a_lost_connection(
    scheme: str,
) -> None:
    # Nothing listens on port 1. reconnect_timeout is for a connection that worked:
    # this one never did, so the caller hears so at once instead of after 30 s.
    with (
        brokerkit.connect(f"{scheme}://127.0.0.1:1/0") as broker,
        pytest.raises(ConnectionFailed, match="could not connect") as failed,
    ):
        broker.publish("orders", b"x")
    assert "lost the connection" not in str(failed.value)


def test_the_asyncio_api_fails_as_fast_on_a_server_never_reached() -> None:
    import asyncio

    import brokerkit.aio

    async def main() -> None:
        async with brokerkit.aio.connect("redis+stream://127.0.0.1:1/0") as broker:
            with pytest.raises(ConnectionFailed, match="could not connect"):
                await broker.publish("orders", b"x")

    asyncio.run(main())
