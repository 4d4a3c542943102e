"""An error names the backend by the scheme of the user's URL, not by the first scheme
of the class that serves it: one class serves kombu+memory and kombu+redis (and
kombu+amqp, kombu+amqps, kombu+pyamqp), and "kombu+memory cannot ..." said of a
kombu+redis:// broker sent its user looking at the wrong backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import Capability, Unsupported
from brokerkit.backends.kombu.amqp import KombuAMQPBroker
from brokerkit.backends.kombu.virtual import KombuVirtualBroker

REDIS = "localhost:6379/0"
RABBIT = "guest:guest@127.0.0.1:5672//"


@pytest.fixture
def name() -> str:
    return f"bk-r36-names-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kombu_redis(name: str) -> Iterator[brokerkit.Broker]:
    broker = brokerkit.connect(f"kombu+redis://{REDIS}?prefix={name}")
    try:
        yield broker
    finally:
        broker.close()


def test_a_kombu_redis_broker_names_itself_kombu_redis(kombu_redis: brokerkit.Broker) -> None:
    assert kombu_redis.describe() == "kombu+redis"
    with pytest.raises(Unsupported) as caught:
        kombu_redis.publish("t", b"x", delay=5)
    assert str(caught.value).startswith("kombu+redis cannot hold a message until a due time")
    assert "kombu+memory" not in str(caught.value)
    with pytest.raises(Unsupported, match=r"^kombu\+redis cannot subscribe to a pattern"):
        kombu_redis.subscribe("t.*", pattern=True)


def test_require_on_the_broker_names_the_url_scheme(kombu_redis: brokerkit.Broker) -> None:
    with pytest.raises(Unsupported, match=r"^kombu\+redis cannot do X: it does not have"):
        kombu_redis.require(Capability.DELAY, "do X")


def test_a_kombu_pyamqp_broker_names_kombu_pyamqp(name: str) -> None:
    broker = brokerkit.connect(f"kombu+pyamqp://{RABBIT}")
    try:
        assert broker.describe() == "kombu+pyamqp"
        with pytest.raises(Unsupported, match=r"^kombu\+pyamqp cannot subscribe to a pattern"):
            broker.subscribe(f"{name}.*", pattern=True)
    finally:
        broker.close()


def test_the_asyncio_broker_names_the_url_scheme(name: str) -> None:
    async def main() -> str:
        async with await brokerkit.aio.connect(f"kombu+redis://{REDIS}?prefix={name}") as broker:
            assert broker.describe() == "kombu+redis"
            with pytest.raises(Unsupported) as caught:
                await broker.publish("t", b"x", delay=5)
            return str(caught.value)

    assert asyncio.run(main()).startswith("kombu+redis cannot hold a message")


def test_the_class_without_a_url_still_names_its_first_scheme() -> None:
    # No URL there: a class (the contract suite's backend_class, a worker's check)
    # still has a name for messages, as before.
    assert KombuVirtualBroker.describe() == "kombu+memory"
    assert KombuAMQPBroker.describe() == "kombu+amqp"
    with pytest.raises(Unsupported, match=r"^kombu\+memory cannot do X"):
        KombuVirtualBroker.require(Capability.DELAY, "do X")
