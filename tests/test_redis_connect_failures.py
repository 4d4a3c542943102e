"""Redis connections that cannot work fail at once, the same on both APIs: TLS files that
cannot be loaded, refused credentials, and a cluster none of whose seeds answers.
``reconnect_timeout`` is for the loss of a connection that worked, never for these.

Each test sets a long ``reconnect_timeout`` and a bound well under it: a hang guard
that tells "raised at once" from "rode the failure out", never a benchmark.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import ever_reached
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer
from tests.redis_tls import TLSRedisServer, find_tls_redis_server

#: Far longer than any of these failures may take.
RECONNECT_TIMEOUT = 60
#: The most seconds a failure that must come at once may take (a hang guard).
AT_ONCE = 10.0

SCHEMES = ["redis+list", "redis+stream"]
APIS = ["sync", "asyncio"]


def publish(api: str, url: str, **options: Any) -> float:
    """Connect to ``url`` and publish once with the API named; the seconds it took
    (the error it raised goes to the caller)."""
    started = time.monotonic()
    if api == "sync":
        with brokerkit.connect(url, reconnect_timeout=RECONNECT_TIMEOUT, **options) as broker:
            broker.publish("orders", "x")
    else:

        async def main() -> None:
            async with brokerkit.aio.connect(
                url, reconnect_timeout=RECONNECT_TIMEOUT, **options
            ) as broker:
                await broker.publish("orders", "x")

        asyncio.run(main())
    return time.monotonic() - started


def refused_at_once(api: str, url: str, match: str, **options: Any) -> brokerkit.ConnectionFailed:
    started = time.monotonic()
    with pytest.raises(brokerkit.ConnectionFailed, match=match) as caught:
        publish(api, url, **options)
    assert time.monotonic() - started < AT_ONCE
    return caught.value


# -- TLS files that cannot be loaded ------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TLSRedisServer]:
    binary = find_tls_redis_server()
    assert binary is not None, "no redis-server built with TLS (apt install redis-server)"
    with TLSRedisServer(binary) as server:
        yield server


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pem"
    path.write_text("not a certificate\n")
    return path


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", ["rediss+list", "rediss+stream"])
def test_a_garbage_ca_file_is_connection_failed(
    tls_server: TLSRedisServer, garbage: Path, scheme: str, api: str
) -> None:
    refused_at_once(api, tls_server.url(scheme, ca=garbage), "could not connect to Redis")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", ["rediss+list", "rediss+stream"])
def test_a_garbage_client_certificate_is_connection_failed(
    tls_server: TLSRedisServer, garbage: Path, scheme: str, api: str
) -> None:
    url = tls_server.url(scheme) + f"&ssl_certfile={garbage}&ssl_keyfile={garbage}"
    refused_at_once(api, url, "could not connect to Redis")


@pytest.mark.parametrize("api", APIS)
def test_the_good_tls_files_still_connect(tls_server: TLSRedisServer, api: str) -> None:
    assert publish(api, tls_server.url("rediss+stream")) < AT_ONCE


# -- refused credentials ------------------------------------------------------------------

PASSWORD = "right-password"


class PasswordRedisServer(RedisServer):
    """A redis-server that asks for :data:`PASSWORD`."""

    def __init__(self) -> None:
        super().__init__(config=("--requirepass", PASSWORD))

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=PASSWORD, socket_timeout=10)

    def url_as(self, scheme: str, password: str | None) -> str:
        auth = f":{password}@" if password is not None else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"


@pytest.fixture
def password_server() -> Iterator[PasswordRedisServer]:
    """A server of the test's own: one this process has never reached."""
    with PasswordRedisServer() as server:
        yield server


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("password", ["wrong-password", None], ids=["wrong", "none"])
def test_refused_credentials_raise_at_once(
    password_server: PasswordRedisServer, scheme: str, api: str, password: str | None
) -> None:
    url = password_server.url_as(scheme, password)
    error = refused_at_once(api, url, "refused the credentials")
    assert password is None or password not in str(error)
    assert not ever_reached(BrokerURL.parse(url))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_refused_credentials_raise_at_once_from_a_server_reached_before(
    password_server: PasswordRedisServer, scheme: str, api: str
) -> None:
    assert publish(api, password_server.url_as(scheme, PASSWORD)) < AT_ONCE
    refused_at_once(
        api, password_server.url_as(scheme, "wrong-password"), "refused the credentials"
    )


# -- a cluster none of whose seeds answers ------------------------------------------------


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_cluster_never_reached_fails_at_once(scheme: str, api: str) -> None:
    seeds = ",".join(f"127.0.0.1:{_unused_port()}" for _ in range(2))
    url = f"{scheme}://{seeds}/0?cluster=true"
    refused_at_once(api, url, "Redis Cluster")
    assert not ever_reached(BrokerURL.parse(url))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_asyncio_cluster_is_reached_once_it_answered(
    redis_cluster: RedisClusterSet, scheme: str, prefix: str
) -> None:
    # Seeds spelled as no other test spells them, so that no other reached them first.
    nodes = redis_cluster.nodes[3:] if scheme == "redis+list" else redis_cluster.nodes[:3]
    seeds = ",".join(f"localhost:{node.port}" for node in reversed(nodes))
    url = f"{scheme}://{seeds}/0?cluster=true&prefix={prefix}"
    parsed = BrokerURL.parse(url)
    assert not ever_reached(parsed)

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            assert not ever_reached(parsed)  # built, not asked anything yet
            await broker.publish("orders", "x")
            assert ever_reached(parsed)  # a lost node is ridden out from now on

    asyncio.run(main())
