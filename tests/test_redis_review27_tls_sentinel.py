"""TLS under Sentinel, against a real TLS-only master and sentinel: the sentinels are
reached over TLS with the URL's certificate options, and a sentinel whose certificate
is not trusted is a clear configuration error that names the sentinel and the TLS
reason, shows no credential and none of redis-py's client reprs (the message was
redis-py's "No master found" text, a whole ``ConnectionPool`` repr per sentinel)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokerkit.exceptions import ConfigurationError
from tests.redis_server import publish_once
from tests.redis_tls import TLSRedisServer, TLSSentinel, require_tls_redis_server

MASTER_PASSWORD = "m4ster-TLS-Pw"
SENTINEL_PASSWORD = "s3ntinel-TLS-Pw"


@pytest.fixture(scope="module")
def tls_sentinel() -> Iterator[TLSSentinel]:
    """A TLS-only master (with a password) and one TLS-only sentinel (with its own)."""
    with TLSRedisServer(require_tls_redis_server()) as master:
        master.require_password(MASTER_PASSWORD)
        with TLSSentinel(
            master, "bktls", password=SENTINEL_PASSWORD, master_password=MASTER_PASSWORD
        ) as sentinel:
            yield sentinel


def _url(sentinel: TLSSentinel, scheme: str, ca: object) -> str:
    return (
        f"{scheme}://:{MASTER_PASSWORD}@127.0.0.1:{sentinel.port}/0?sentinel={sentinel.name}"
        f"&ssl_ca_certs={ca}&sentinel_password={SENTINEL_PASSWORD}"
    )


def _run(api: str, url: str, prefix: str, scheme: str) -> None:
    """Publish once (and, on pub/sub, subscribe first and receive it)."""
    receive = scheme == "rediss+pubsub"
    publish_once(api, url, "tls", "x", receive=receive, prefix=prefix, reconnect_timeout=60)


SCHEMES = ["rediss+stream", "rediss+list", "rediss+pubsub"]
APIS = ["sync", "asyncio"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_sentinels_and_the_master_are_reached_over_tls(
    tls_sentinel: TLSSentinel, prefix: str, scheme: str, api: str
) -> None:
    _run(api, _url(tls_sentinel, scheme, tls_sentinel.master.files.ca), prefix, scheme)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_untrusted_sentinel_certificate_is_a_clear_configuration_error(
    tls_sentinel: TLSSentinel, prefix: str, scheme: str, api: str
) -> None:
    url = _url(tls_sentinel, scheme, tls_sentinel.master.files.other_ca)
    with pytest.raises(ConfigurationError) as caught:
        _run(api, url, prefix, scheme)
    message = str(caught.value)
    assert f"127.0.0.1:{tls_sentinel.port}" in message  # the sentinel, named
    assert "certificate verify failed" in message  # the TLS reason
    assert "ssl_ca_certs" in message  # the fix
    for secret in (MASTER_PASSWORD, SENTINEL_PASSWORD):
        assert secret not in message
    assert "ConnectionPool" not in message and "REDACTED" not in message, message
