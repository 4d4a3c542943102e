"""TLS on a Redis Cluster, against three real TLS-only nodes: every backend works over
``rediss+...://...?cluster=true`` with the test CA, on both APIs, and a node certificate
the client does not trust is a clear configuration error naming ``ssl_ca_certs``, as on
one server and under Sentinel. It was ``ConnectionFailed: the Redis Cluster at ...
could not be reached`` (or "could not be used"), with no hint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConfigurationError
from tests.redis_tls import TLSClusterSet, require_tls_redis_server

SCHEMES = ["rediss+stream", "rediss+list", "rediss+pubsub"]
APIS = ["sync", "asyncio"]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSClusterSet]:
    directory = tmp_path_factory.mktemp("tls-cluster")
    with TLSClusterSet(require_tls_redis_server(), directory) as cluster:
        yield cluster


def _round_trip(api: str, url: str, prefix: str, scheme: str) -> None:
    """Subscribe, publish, receive and ack one message."""
    group = {"group": "g"} if scheme == "rediss+stream" else {}
    if api == "sync":
        with brokerkit.connect(url, prefix=prefix, reconnect_timeout=60) as broker:
            subscription = broker.subscribe("tls", **group)
            broker.publish("tls", "x")
            delivery = subscription.receive(timeout=10)
            assert delivery is not None and delivery.body == "x"
            delivery.ack()
        return

    async def main() -> None:
        async with await brokerkit.aio.connect(url, prefix=prefix, reconnect_timeout=60) as broker:
            subscription = await broker.subscribe("tls", **group)
            await broker.publish("tls", "x")
            delivery = await subscription.receive(timeout=10)
            assert delivery is not None and delivery.body == "x"
            await delivery.ack()

    asyncio.run(main())


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_backend_works_on_a_tls_cluster(
    tls_cluster: TLSClusterSet, prefix: str, scheme: str, api: str
) -> None:
    _round_trip(api, tls_cluster.url(scheme), prefix, scheme)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_untrusted_node_certificate_is_a_clear_configuration_error(
    tls_cluster: TLSClusterSet, prefix: str, scheme: str, api: str
) -> None:
    other_ca: Path = tls_cluster.files.other_ca
    with pytest.raises(ConfigurationError) as caught:
        _round_trip(api, tls_cluster.url(scheme, ca=other_ca), prefix, scheme)
    message = str(caught.value)
    assert "the TLS certificate of a node of the Redis Cluster at" in message, message
    assert "certificate verify failed" in message and "ssl_ca_certs=" in message
