"""A TLS server that wants a client certificate, and gets none or one it does not
trust: a clear configuration error, raised at once on every backend and both APIs
(also after the server answered this process before), that says the server refused
this client's certificate and how to give one, never the password. It was
``ConnectionFailed: could not connect ...: nothing answered (...); check the host,
the port and that the server runs``, and, the server once reached, a lost connection
ridden out for the whole ``reconnect_timeout``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from brokerkit.exceptions import ConfigurationError, ConnectionFailed
from tests.redis_server import publish_once
from tests.redis_tls import ClientCertificateTLSRedisServer, require_tls_redis_server

PASSWORD = "cl1ent-TLS-Pw"
#: Far longer than any of these failures may take.
RECONNECT_TIMEOUT = 60
#: The most seconds a failure that must come at once may take (a hang guard).
AT_ONCE = 20.0

SCHEMES = ["rediss+stream", "rediss+list", "rediss+pubsub"]
APIS = ["sync", "asyncio"]


@pytest.fixture(scope="module")
def server() -> Iterator[ClientCertificateTLSRedisServer]:
    with ClientCertificateTLSRedisServer(require_tls_redis_server()) as server:
        server.require_password(PASSWORD)
        yield server


def _url(server: ClientCertificateTLSRedisServer, scheme: str, client: str) -> str:
    url = f"{scheme}://:{PASSWORD}@127.0.0.1:{server.port}/0?ssl_ca_certs={server.files.ca}"
    files = server.client_files
    if client == "trusted":
        return f"{url}&ssl_certfile={files.cert}&ssl_keyfile={files.key}"
    if client == "untrusted":
        return f"{url}&ssl_certfile={files.other_cert}&ssl_keyfile={files.other_key}"
    return url


def _run(api: str, url: str, prefix: str, scheme: str) -> None:
    """Publish once (on pub/sub, subscribe first and receive it)."""
    publish_once(
        api,
        url,
        "certs",
        "x",
        receive=scheme == "rediss+pubsub",
        prefix=prefix,
        reconnect_timeout=RECONNECT_TIMEOUT,
    )


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_trusted_client_certificate_connects(
    server: ClientCertificateTLSRedisServer, prefix: str, scheme: str, api: str
) -> None:
    _run(api, _url(server, scheme, "trusted"), prefix, scheme)


@pytest.mark.parametrize("client", ["none", "untrusted"])
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_refused_client_certificate_is_a_clear_configuration_error_at_once(
    server: ClientCertificateTLSRedisServer, prefix: str, scheme: str, api: str, client: str
) -> None:
    _run(api, _url(server, scheme, "trusted"), prefix, scheme)  # reached before
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        _run(api, _url(server, scheme, client), prefix, scheme)
    assert time.monotonic() - started < AT_ONCE  # not ridden out as a lost connection
    message = str(caught.value)
    assert f"Redis at {scheme}://:***@127.0.0.1:{server.port}/0" in message
    if client == "untrusted":
        assert "refused this client's TLS certificate" in message, message
        assert "unknown ca" in message.lower(), message  # the server's own reason
    else:
        assert "refused the TLS handshake" in message, message
    assert "ssl_certfile=" in message and "ssl_keyfile=" in message
    assert "nothing answered" not in message
    assert PASSWORD not in message


@pytest.fixture
def tls13_server() -> Iterator[ClientCertificateTLSRedisServer]:
    """A TLS 1.3 server of this test's own: never reached by this process."""
    with ClientCertificateTLSRedisServer(require_tls_redis_server(), tls13=True) as server:
        yield server


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_tls13_server_refusing_a_missing_client_certificate_names_the_fix(
    tls13_server: ClientCertificateTLSRedisServer, prefix: str, scheme: str, api: str
) -> None:
    """TLS 1.3 checks the client's certificate after the handshake: the client reads the
    server's alert (a configuration error) or finds the connection closed ("could not
    connect", as the timing falls); either way the message names the options to give.
    A reset connection's message named only the host, the port and whether the server
    runs."""
    url = f"{scheme}://127.0.0.1:{tls13_server.port}/0?ssl_ca_certs={tls13_server.files.ca}"
    with pytest.raises((ConfigurationError, ConnectionFailed)) as caught:
        _run(api, url, prefix, scheme)
    message = str(caught.value)
    assert "ssl_certfile=" in message and "ssl_keyfile=" in message, message


@pytest.mark.parametrize("api", APIS)
def test_a_plain_url_to_a_tls_only_port_says_to_use_rediss(
    tls13_server: ClientCertificateTLSRedisServer, prefix: str, api: str
) -> None:
    url = f"redis+stream://127.0.0.1:{tls13_server.port}/0"
    with pytest.raises(ConnectionFailed) as caught:
        _run(api, url, prefix, "redis+stream")
    assert "could not connect" in str(caught.value)
    assert "rediss+" in str(caught.value), str(caught.value)
