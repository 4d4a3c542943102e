"""Deleting a scratch prefix (``brokerkit check``/``bench``, a contract run from a URL)
builds its client with the URL's options: on a cluster whose seed answers and whose
master does not (a failover under way), it waits the URL's reconnect_timeout, not the
default 30 s. A one-node cluster announcing an address it does not listen on; the
test's timeout (20 s) is under the default and far over the URL's 0.2 s, so no bound
on the time is asserted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from brokerkit.exceptions import ConnectionFailed
from tests.redis_cluster import OneNodeCluster


@pytest.fixture(scope="module")
def cluster_without_master() -> Iterator[OneNodeCluster]:
    with OneNodeCluster() as cluster:
        yield cluster


@pytest.mark.timeout(20)
def test_unlink_waits_the_urls_reconnect_timeout(cluster_without_master: OneNodeCluster) -> None:
    url = BrokerURL.parse(f"{cluster_without_master.url('redis+list')}&reconnect_timeout=0.2")
    with pytest.raises(ConnectionFailed) as raised:
        unlink_prefixed(url, "review27b-unlink:")
    assert "127.0.0.2" in str(raised.value)  # the master of the map, which did not answer
