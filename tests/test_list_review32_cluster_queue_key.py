"""redis+list on a Redis Cluster refuses a ``queue_key`` template with a ``}`` outside
a hash tag (``a}b:*``, ``{}:*``, ``*{}``) when the broker is made, with InvalidOption
saying why and what to use. Such a queue is hashed whole by Redis, and brokerkit's keys
named after it (``{a}b:orders}:deadlines``: hashed by ``a``) fall in another slot, so
before, every fetch and every publish with ``maxlen`` failed ("all keys must map to the
same key slot"). A single server takes such a template as before; a template with a
hash tag works on a cluster, dead letters and all. Against a real 3+3 Redis Cluster."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit.exceptions import InvalidOption
from tests.redis_cluster import RedisClusterSet

pytestmark = pytest.mark.redis_list


@pytest.mark.parametrize("template", ["a}b:*", "{}:*", "*{}"])
def test_a_brace_outside_a_hash_tag_is_refused_on_a_cluster(
    redis_cluster: RedisClusterSet, prefix: str, template: str
) -> None:
    url = redis_cluster.url("redis+list")
    with pytest.raises(InvalidOption, match=r"outside a hash tag.*'\{queue\}:\*'"):
        brokerkit.connect(url, queue_key=template.replace("*", f"{prefix}-*")).close()


def test_a_template_with_a_hash_tag_works_on_a_cluster(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    url = redis_cluster.url("redis+list")
    with brokerkit.connect(url, queue_key="{" + prefix + "}:*", maxlen=5) as broker:
        broker.publish("orders", {"n": 1})
        with broker.subscribe("orders") as subscription:
            delivery = subscription.receive(timeout=5)
            assert delivery is not None and delivery.body == {"n": 1}
            delivery.nack(requeue=False)
        got = list(broker.consume("orders.dlq", timeout=0.5))
        assert [d.body for d in got] == [{"n": 1}]
        broker.ack(*got)


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def test_a_single_server_takes_such_a_template_as_before(
    connect: Callable[..., Any], prefix: str
) -> None:
    broker = connect(queue_key=f"{prefix}}}b:*", maxlen=5)
    broker.publish("orders", 1)
    got = list(broker.consume("orders", timeout=0.5))
    assert [d.body for d in got] == [1]
    broker.ack(*got)
