"""The CLI on a Redis Cluster and under Sentinel: inspect, rescue and purge go to the
node that serves the topic's slot; topics are listed and scratch keys removed from every
master."""

from __future__ import annotations

import json

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.cli._app import run
from brokerkit.cli._scratch import remove_keys
from tests.redis_cluster import RedisClusterSet, SentinelSet


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_inspect_and_rescue_on_a_cluster(
    redis_cluster: RedisClusterSet, prefix: str, scheme: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis_cluster.url(scheme, prefix=prefix)
    topics = [f"cli{i}" for i in range(6)]  # on every master
    with brokerkit.connect(url) as broker:
        for topic in topics:
            broker.publish_many(topic, [1, 2])
    for topic in topics:
        assert run(["inspect", url, topic, "--json"]) == 0
        printed = capsys.readouterr().out
        assert json.loads(printed)["length"] == 2, printed
        if scheme == "redis+list":  # redis+stream has no rescue step
            assert run(["rescue", url, topic]) == 0
            capsys.readouterr()
    assert run(["topics", url, "--json"]) == 0  # listing scans every master
    listed = capsys.readouterr().out
    assert all(f'"{topic}"' in listed for topic in topics), listed
    with brokerkit.connect(url) as broker:
        assert set(topics) <= set(broker.topics())
        assert [broker.purge(topic) for topic in topics] == [2] * 6


def test_scratch_keys_are_removed_from_every_master(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    client = redis_cluster.client()
    try:
        keys = [f"{prefix}:k{i}" for i in range(40)]  # spread over every slot range
        for key in keys:
            client.set(key, 1)
        assert len({client.get_node_from_key(k).name for k in keys}) == 3  # type: ignore[union-attr]
        assert remove_keys(BrokerURL.parse(redis_cluster.url("redis+stream")), prefix) == 40
        assert not any(client.exists(k) for k in keys)
    finally:
        client.close()


def test_scratch_keys_are_removed_under_sentinel(redis_sentinel: SentinelSet, prefix: str) -> None:
    master = redis_sentinel.current_master().client()
    try:
        master.set(f"{prefix}:a", 1)
        assert remove_keys(BrokerURL.parse(redis_sentinel.url("redis+list")), prefix) == 1
        assert not master.exists(f"{prefix}:a")
    finally:
        master.close()
