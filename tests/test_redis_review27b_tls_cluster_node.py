"""A Redis Cluster whose seed's TLS certificate is accepted and whose slot map names a
node whose certificate is not (the certificate names a DNS host, the node announces its
IP address: an IP address mismatch): a ConfigurationError at once on both APIs, as
docs/security.md promises, never a wait of reconnect_timeout first (the sync client,
whose builder asks the map's node at once, retried it as a node failing over).

reconnect_timeout is 60 s and each test's timeout well under it: a test that waits it
out fails by its timeout, not by a bound on how long the error took."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokerkit.exceptions import ConfigurationError
from tests.redis_server import publish_once
from tests.redis_tls import TLSOneNodeCluster, require_tls_redis_server


@pytest.fixture(scope="module")
def mismatched_cluster() -> Iterator[TLSOneNodeCluster]:
    with TLSOneNodeCluster(require_tls_redis_server()) as cluster:
        yield cluster


def _check(error: ConfigurationError) -> None:
    message = str(error)
    assert "not accepted" in message, message
    assert "127.0.0.2" in message, message  # the node refused, by the address it announced
    assert "ssl_ca_certs" in message, message  # the fix


@pytest.mark.timeout(30)
@pytest.mark.parametrize("api", ["sync", "asyncio"])
@pytest.mark.parametrize("scheme", ["rediss+stream", "rediss+list", "rediss+pubsub"])
def test_a_refused_node_certificate_is_a_configuration_error_at_once(
    mismatched_cluster: TLSOneNodeCluster, prefix: str, scheme: str, api: str
) -> None:
    url = mismatched_cluster.url(scheme, reconnect_timeout="60")
    with pytest.raises(ConfigurationError) as raised:
        publish_once(api, url, "t", b"x", prefix=prefix)
    _check(raised.value)


@pytest.mark.timeout(30)
def test_the_seed_itself_is_accepted(mismatched_cluster: TLSOneNodeCluster) -> None:
    """The fixture is what it says: by its name the node's certificate is accepted."""
    client = mismatched_cluster.client()
    try:
        assert client.ping()
    finally:
        client.close()
