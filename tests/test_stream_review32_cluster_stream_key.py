"""redis+stream on a Redis Cluster refuses a ``stream_key`` template with a ``}``
outside a hash tag (``a}b:*``, ``{}:*``, ``*{}``) when the broker is made, with
InvalidOption saying why and what to use. Such a stream is hashed whole by Redis, and
brokerkit's keys named after it (``{a}b:orders}:vt``: hashed by ``a``) fall in another
slot, so before, every subscribe failed with ConnectionFailed ("the Redis Cluster ...
could not be used: EVALSHA - all keys must map to the same key slot"), as if the
cluster were away. A template with a hash tag still works there, dead letters and all.
Against a real 3+3 Redis Cluster."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import InvalidOption
from tests.redis_cluster import RedisClusterSet


@pytest.mark.parametrize("template", ["a}b:*", "{}:*", "*{}"])
def test_a_brace_outside_a_hash_tag_is_refused_on_a_cluster(
    redis_cluster: RedisClusterSet, prefix: str, template: str
) -> None:
    url = redis_cluster.url("redis+stream")
    with pytest.raises(InvalidOption, match=r"outside a hash tag.*'\{events\}:\*'"):
        brokerkit.connect(url, stream_key=template.replace("*", f"{prefix}-*")).close()


def test_a_template_with_a_hash_tag_works_on_a_cluster(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    url = redis_cluster.url("redis+stream")
    with brokerkit.connect(url, stream_key="{" + prefix + "}:*") as broker:
        subscription = broker.subscribe("orders", group="g")
        broker.publish("orders", {"n": 1})
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == {"n": 1}
        delivery.nack(requeue=False)
        assert [e.message.body for e in broker.read("orders.dlq")] == [{"n": 1}]
