"""``topics()`` on Redis finds the topics a key template names (``queue_key``,
``stream_key``), dead-letter topics included, and a key that is not a valid topic
name (another program's) neither shows up nor breaks the listing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

import brokerkit
from brokerkit.backends.redis._keys import KeyTemplate, hash_tagged
from tests.conftest import RedisTarget


@pytest.fixture
def unique() -> str:
    return "scan" + uuid.uuid4().hex[:10]


@pytest.fixture
def cleanup(redis_client: redis.Redis, unique: str) -> Iterator[None]:
    yield
    for pattern in (f"*{unique}*",):
        keys = list(redis_client.scan_iter(match=pattern, count=1000))
        if keys:
            redis_client.delete(*keys)


@pytest.mark.usefixtures("cleanup")
@pytest.mark.parametrize(
    ("scheme", "option"), [("redis+list", "queue_key"), ("redis+stream", "stream_key")]
)
@pytest.mark.parametrize("shape", ["{u}:q:*", "u:q:*", "u:q:{*}"])
def test_a_key_template_lists_its_topics_and_only_those(
    scheme: str,
    option: str,
    shape: str,
    unique: str,
    redis_target: RedisTarget,
    redis_client: redis.Redis,
) -> None:
    template = shape.replace("u", unique)
    url = redis_target.url(scheme, **{option: template, "max_deliveries": "1"})
    other = template.replace("*", "config")
    redis_client.hset(other, "a", "b")  # another program's key of another type
    odd = template.replace("*", "odd[name]")  # not a valid topic name
    if scheme == "redis+list":
        redis_client.rpush(odd, "x")
    else:
        redis_client.xadd(odd, {"body": "x"})
    with brokerkit.connect(url) as broker:
        broker.publish("orders", {"n": 1})
        broker.publish("orders", {"n": 2})
        broker.publish("orders:eu", {"n": 3})
        broker.publish("audit", {"n": 4})
        with broker.subscribe("orders") as orders:
            first = orders.receive(timeout=5)
            assert first is not None
            first.nack(requeue=False)  # to orders.dlq
            held = orders.receive(timeout=5)  # held: the consumer's own keys exist
            assert held is not None
            assert broker.topics() == ["audit", "orders", "orders.dlq", "orders:eu"]
            held.ack()


@pytest.mark.usefixtures("cleanup")
@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_key_under_the_prefix_that_is_no_topic_is_left_out(
    scheme: str, unique: str, redis_target: RedisTarget, redis_client: redis.Redis
) -> None:
    redis_client.rpush(f"{unique}:{{q[b]}}", "x")
    with brokerkit.connect(redis_target.url(scheme, prefix=unique)) as broker:
        broker.publish("orders", "x")
        assert broker.topics() == ["orders"]


def test_a_key_is_its_own_hash_tag_unless_it_holds_a_non_empty_one() -> None:
    assert hash_tagged("queue:orders") == "{queue:orders}"
    assert hash_tagged("{app}:queue:orders") == "{app}:queue:orders"
    # Redis hashes "{}x}" whole: its first "{...}" is empty
    assert hash_tagged("{}x}") == "{{}x}}"


@pytest.mark.parametrize(
    ("template", "key", "part", "topic"),
    [
        ("q:*", "q:orders", "", "orders"),
        ("q:*", "{q:orders}.dlq", "", "orders.dlq"),
        ("q:*", "{q:orders}:expiry", "expiry", "orders"),
        ("q:*", "{q:orders}.dlq:expiry", "expiry", "orders.dlq"),
        ("q:*", "{q:orders}:deadlines", "", None),
        ("q:*", "{q:orders}x", "", None),
        ("q:*:v1", "q:orders:v1", "", "orders"),
        ("q:*:v1", "q:orders:v2", "", None),
        ("{app}:q:*", "{app}:q:orders.dlq", "", "orders.dlq"),
        ("{app}:q:*", "{app}:q:orders:expiry", "expiry", "orders"),
        ("q:{*}", "q:{orders}", "", "orders"),
        ("q:{*}", "q:{orders}.dlq", "", "orders.dlq"),
        ("q:{*}", "q:{orders}.dlq:expiry", "expiry", "orders.dlq"),
        ("q:{*}", "q:{orders}x", "", None),
    ],
)
def test_a_key_template_reads_a_key_back_as_its_topic(
    template: str, key: str, part: str, topic: str | None
) -> None:
    assert KeyTemplate(template).topic_of(key, part) == topic
