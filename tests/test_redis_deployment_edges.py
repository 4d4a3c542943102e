"""Edges of the Redis deployments (Cluster, Sentinel): redis-py's connection arguments
in the URL mean the same to brokerkit.connect and brokerkit.aio.connect, and what the
sentinels answer when they name no master is told to the user as it is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit._url import BrokerURL
from brokerkit.backends.redis import _client, _client_async
from brokerkit.backends.redis._client import Reconnector
from brokerkit.backends.redis._connection import note_url_reached
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS, TLS_QUERY_KEYS
from brokerkit.exceptions import ConfigurationError, ConnectionFailed
from tests.conftest import RedisTarget
from tests.redis_cluster import SentinelSet, _Sentinel
from tests.redis_server import RedisServer
from tests.redis_server import _free_port as free_port
from tests.redis_tls import make_certificates

SENTINEL_PASSWORD = "s3ntinel-Pw"
MASTER_PASSWORD = "m4ster-Pw"

Publish = Callable[[str, str], Exception | None]


def _publish_sync(url: str, prefix: str) -> Exception | None:
    """None when a broker of ``url`` publishes, else what it raised."""
    try:
        with brokerkit.connect(url, prefix=prefix) as broker:
            broker.publish("edges", b"x")
    except Exception as exc:  # the outcome compared, whatever it is
        return exc
    return None


def _publish_async(url: str, prefix: str) -> Exception | None:
    async def main() -> None:
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish("edges", b"x")

    try:
        asyncio.run(main())
    except Exception as exc:
        return exc
    return None


# --- max_connections in a Sentinel URL --------------------------------------------


def test_max_connections_caps_the_sentinel_master_pool(
    redis_sentinel: SentinelSet, prefix: str
) -> None:
    """``max_connections`` in a Sentinel URL caps the master's pool, as on one server,
    instead of clashing with brokerkit's default (every connect failed)."""
    url = redis_sentinel.url("redis+stream", max_connections="10")
    assert _publish_sync(url, prefix) is None
    assert _publish_async(url, prefix) is None
    parsed = BrokerURL.parse(url)
    sync_client = _client.make_client(parsed)
    async_client = _client_async.make_client(parsed)
    assert sync_client.connection_pool.max_connections == 10
    assert async_client.connection_pool.max_connections == 10
    sync_client.close()


# --- redis-py's connection arguments, sync and asyncio ----------------------------

#: A valid value of every query key brokerkit hands to redis-py; ``{tls}`` is a
#: directory of test certificates.
DRIVER_VALUES = {
    "db": "0",
    "health_check_interval": "5",
    "max_connections": "10",
    "protocol": "3",
    "retry_on_timeout": "true",
    "socket_connect_timeout": "3",
    "socket_keepalive": "true",
    "socket_timeout": "3",
    "client_name": "bk-edges",
    "ssl_cert_reqs": "none",
    "ssl_ca_certs": "{tls}/test-ca.pem",
    "ssl_certfile": "{tls}/server.pem",
    "ssl_keyfile": "{tls}/server.key",
    "ssl_check_hostname": "false",
    "ssl_min_version": "771",
}


def test_every_driver_key_has_a_value_to_try() -> None:
    assert set(DRIVER_VALUES) == DRIVER_QUERY_KEYS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory)
    return directory


@pytest.mark.parametrize("key", sorted(DRIVER_QUERY_KEYS - TLS_QUERY_KEYS))
@pytest.mark.parametrize("kind", ["server", "cluster", "sentinel"])
def test_a_driver_key_works_alike_sync_and_asyncio(
    request: pytest.FixtureRequest, prefix: str, kind: str, key: str
) -> None:
    """docs/deployments.md: redis-py's connection arguments pass through on every
    deployment, to brokerkit.connect and brokerkit.aio.connect alike (redis.asyncio's
    RedisCluster has no ``retry_on_timeout``: it was refused there alone)."""
    option = {key: DRIVER_VALUES[key]}
    if kind == "server":
        url = request.getfixturevalue("redis_target").url("redis+stream", **option)
    elif kind == "cluster":
        url = request.getfixturevalue("redis_cluster").url("redis+stream", **option)
    else:
        url = request.getfixturevalue("redis_sentinel").url("redis+stream", **option)
    assert (_publish_sync(url, prefix), _publish_async(url, prefix)) == (None, None)


@pytest.mark.parametrize("key", sorted(TLS_QUERY_KEYS))
def test_a_tls_key_on_a_cluster_is_taken_alike_sync_and_asyncio(tls_files: Path, key: str) -> None:
    """Neither cluster client refuses the key. Nothing listens at the seeds, so the
    sync client, which asks a seed for the slots when it is built, fails to connect."""
    value = DRIVER_VALUES[key].format(tls=tls_files)
    seeds = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    url = BrokerURL.parse(f"rediss+stream://{seeds}/0?cluster=true&{key}={value}")
    _client_async.make_client(url)  # builds without I/O
    with pytest.raises(ConnectionFailed, match="could not be reached"):
        _client.make_client(url)


# --- what the sentinels answered when they named no master ------------------------


def _wait_answering(port: int, password: str | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()


@pytest.fixture
def guarded_sentinel() -> Iterator[_Sentinel]:
    """A sentinel of this test's own that wants a password, watching a private server
    as ``bkguard``; never reached before (a new port), so a failure is not ridden out."""
    with RedisServer() as master:
        sentinel = _Sentinel("bkguard", master.port)
        sentinel.config.write_text(
            sentinel.config.read_text() + f"requirepass {SENTINEL_PASSWORD}\n"
        )
        sentinel.start()
        try:
            _wait_answering(sentinel.port, SENTINEL_PASSWORD)
            yield sentinel
        finally:
            sentinel.stop()


def _guarded_url(sentinel: _Sentinel, password: str, master: str = "bkguard") -> str:
    return (
        f"redis+stream://app:{MASTER_PASSWORD}@127.0.0.1:{sentinel.port}/0"
        f"?sentinel={master}&sentinel_password={password}"
    )


def _assert_clean(message: str) -> None:
    """No credential and none of redis-py's client reprs in an error message."""
    for secret in (SENTINEL_PASSWORD, MASTER_PASSWORD, "wrong-Pw"):
        assert secret not in message
    assert "ConnectionPool" not in message and "nothing answered" not in message


@pytest.mark.parametrize("publish", [_publish_sync, _publish_async])
def test_sentinels_refusing_the_password_say_so(
    guarded_sentinel: _Sentinel, prefix: str, publish: Publish
) -> None:
    """A wrong sentinel_password is refused credentials, caused by redis-py's
    AuthenticationError (so that nothing retries it), not "nothing answered"."""
    error = publish(_guarded_url(guarded_sentinel, "wrong-Pw"), prefix)
    assert isinstance(error, ConnectionFailed)
    assert "refused the credentials" in str(error) and "sentinel_password" in str(error)
    assert "invalid username-password pair" in str(error)  # the sentinel's own words
    assert isinstance(error.__cause__, redis.AuthenticationError)
    _assert_clean(str(error))
    _assert_clean(str(error.__cause__))


def test_sentinels_refusing_the_password_are_not_waited_for(
    guarded_sentinel: _Sentinel,
) -> None:
    """However long the deployment has answered before, a refusal by its sentinels is
    raised at once, not ridden out for the whole reconnect timeout."""
    url = BrokerURL.parse(_guarded_url(guarded_sentinel, "wrong-Pw"))
    note_url_reached(url)
    client = _client.make_client(url)
    calls: list[int] = []

    def ping() -> object:
        calls.append(1)
        return client.ping()

    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="refused the credentials"):
        Reconnector(url, timeout=60).call(ping)
    assert calls == [1] and time.monotonic() - started < 30
    client.close()


@pytest.mark.parametrize("publish", [_publish_sync, _publish_async])
def test_a_sentinel_url_naming_a_redis_server_says_it_is_not_a_sentinel(
    redis_target: RedisTarget, prefix: str, publish: Publish
) -> None:
    """A configuration error, raised at once: no host of the URL will ever answer as a
    sentinel (this server has answered as a server before, in this process)."""
    where = f"{redis_target.host}:{redis_target.port}"
    error = publish(f"redis+stream://app:{MASTER_PASSWORD}@{where}/0?sentinel=m", prefix)
    assert isinstance(error, ConfigurationError)
    assert f"{where} in " in str(error)
    assert "is not a sentinel" in str(error) and "26379" in str(error)
    _assert_clean(str(error))


@pytest.mark.parametrize("publish", [_publish_sync, _publish_async])
def test_a_redis_server_among_sentinels_that_do_not_answer_is_named(
    redis_server: RedisServer, prefix: str, publish: Publish
) -> None:
    """The other host may be a sentinel that is down for now: a connection failure."""
    hosts = f"127.0.0.1:{redis_server.port},127.0.0.1:{free_port()}"
    error = publish(f"redis+stream://{hosts}/0?sentinel=m", prefix)
    assert isinstance(error, ConnectionFailed)
    assert f"127.0.0.1:{redis_server.port} in " in str(error)
    assert "is not a sentinel" in str(error)
    _assert_clean(str(error))


@pytest.mark.parametrize("publish", [_publish_sync, _publish_async])
def test_sentinels_that_know_no_such_master_say_so(
    guarded_sentinel: _Sentinel, prefix: str, publish: Publish
) -> None:
    error = publish(_guarded_url(guarded_sentinel, SENTINEL_PASSWORD, "nosuch"), prefix)
    assert isinstance(error, ConnectionFailed)
    assert "know no master 'nosuch'" in str(error) and "sentinel monitor" in str(error)
    _assert_clean(str(error))


@pytest.mark.parametrize("publish", [_publish_sync, _publish_async])
def test_sentinels_that_do_not_answer_are_named_without_redis_py_reprs(
    prefix: str, publish: Publish
) -> None:
    ports = [free_port(), free_port()]  # nothing listens there
    url = f"redis+stream://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/0?sentinel=m"
    error = publish(url, prefix)
    assert isinstance(error, ConnectionFailed)
    message = str(error)
    assert "could not connect" in message and "no sentinel answered" in message
    assert all(f"127.0.0.1:{port}: " in message for port in ports)
    assert "ConnectionPool" not in message
