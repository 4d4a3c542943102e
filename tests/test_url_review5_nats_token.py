"""A NATS token in the URL (``nats://TOKEN@host``, NATS's own form: a user part with no
password is the secret) is never shown: not by ``str()``, ``repr()`` or ``render()``
of the URL or of the broker, not in an error, a log line or the command's output. A
user name without a password stays shown for the other backends (``redis://alice@h``
names a user), and a NATS user name beside a password too."""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from urllib.parse import quote

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import BrokerURL, ConnectionFailed, InvalidOption, InvalidURL
from brokerkit._plugins import _registry

TOKEN = "T0kenXyz\u00a7Q7"


def _forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote(secret), secret[:8]]


def _hidden(text: str, secret: str = TOKEN) -> bool:
    return not any(form in text for form in _forms(secret))


def _nats_schemes() -> list[str]:
    """Every NATS scheme brokerkit registers (``nats``, ``nats+core``...)."""
    schemes = [s for s in _registry().schemes() if s.split("+", 1)[0] == "nats"]
    assert {"nats", "nats+core"} <= set(schemes)
    return schemes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once closed


# -- the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", _nats_schemes())
def test_url_review5_a_nats_token_is_masked_in_every_rendering(scheme: str) -> None:
    url = BrokerURL.parse(f"{scheme}://{quote(TOKEN, safe='')}@127.0.0.1:4222?prefix=p")
    for text in (str(url), repr(url), url.render(), f"{url}", f"{url!r}"):
        assert _hidden(text), text
    assert str(url) == f"{scheme}://***@127.0.0.1:4222?prefix=p"
    # The driver still gets it.
    assert url.username == TOKEN and url.password is None
    assert TOKEN in BrokerURL.parse(url.render(hide_password=False)).username


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+stream://alice@localhost:6379/0", "redis+stream://alice@localhost:6379/0"),
        ("redis+list://alice:pw@localhost/0", "redis+list://alice:***@localhost/0"),
        ("kombu+amqp://alice@localhost:5672//", "kombu+amqp://alice@localhost:5672//"),
        ("nats://bob:s3cret@localhost:4222", "nats://bob:***@localhost:4222"),
        ("nats+core://:s3cret@localhost:4222", "nats+core://:***@localhost:4222"),
        ("nats://localhost:4222", "nats://localhost:4222"),
    ],
)
def test_url_review5_a_user_name_that_is_no_secret_stays_shown(url: str, shown: str) -> None:
    assert str(BrokerURL.parse(url)) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"nats://{TOKEN}@127.0.0.1:99999",  # port out of range
        f"nats://{TOKEN}@127.0.0.1:port",  # port not a number
        f"nats+core://{TOKEN}@h1:4222,h2:x",  # a bad host in a list
        f"nats://{TOKEN}@127.0.0.1:4222?prefix=a&prefix=b",  # an option given twice
        f"nats:/{TOKEN}@127.0.0.1:4222",  # a mistyped ://
        f"nats://{TOKEN}@@127.0.0.1:4222",  # an unencoded @
        f"{TOKEN}@127.0.0.1:4222",  # no scheme to tell
    ],
)
def test_url_review5_an_invalid_nats_url_never_quotes_its_token(url: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect(url)
    assert _hidden(str(refused.value)), str(refused.value)


# -- the broker ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", _nats_schemes())
def test_url_review5_a_nats_broker_never_shows_its_token(scheme: str) -> None:
    url = f"{scheme}://{TOKEN}@127.0.0.1:{_free_port()}?prefix=p"  # connected on first use
    broker = brokerkit.connect(url)
    try:
        for text in (repr(broker), str(broker), str(broker.url), repr(broker.url)):
            assert _hidden(text), text
        assert "***@127.0.0.1" in repr(broker)
    finally:
        broker.close()
    assert _hidden(repr(broker))

    async def main() -> None:
        async with await brokerkit.aio.connect(url) as broker:
            assert _hidden(repr(broker)) and _hidden(str(broker.url))

    asyncio.run(main())


def test_url_review5_an_option_error_never_shows_the_token() -> None:
    with pytest.raises(InvalidOption) as refused:
        brokerkit.connect(f"nats+core://{TOKEN}@127.0.0.1:4222?max_deliveries=3")
    assert _hidden(str(refused.value))


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record's message, arguments and extra fields, as text."""
    return caplog.text + "".join(repr(vars(record)) for record in caplog.records)


@pytest.mark.parametrize("scheme", ["nats", "nats+core"])
def test_url_review5_a_real_connection_with_a_token_never_shows_it(
    scheme: str, nats_url: str, nats_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the suite's server (which asks for no token, so takes any), at DEBUG."""
    url = nats_url.replace("nats://", f"{scheme}://{TOKEN}@", 1)
    caplog.set_level(logging.DEBUG)
    with brokerkit.connect(url, prefix=nats_prefix) as broker:
        subscription = broker.subscribe("orders")
        broker.publish("orders", "hello")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "hello"
        texts = [repr(broker), repr(subscription), repr(delivery), repr(broker.inspect("orders"))]
        if scheme == "nats":
            delivery.ack()
    assert all(_hidden(text) for text in texts), texts
    assert _hidden(_log_text(caplog))


@pytest.mark.parametrize("scheme", ["nats", "nats+core"])
def test_url_review5_a_failed_connection_with_a_token_never_shows_it(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = brokerkit.connect(
        f"{scheme}://{TOKEN}@127.0.0.1:{_free_port()}?prefix=p", connect_timeout=0.5
    )
    try:
        with pytest.raises(ConnectionFailed) as failed:
            broker.publish("orders", "hello")
        told = "".join(traceback.format_exception(failed.value))
        assert _hidden(told), told
        assert _hidden(repr(broker))
    finally:
        broker.close()
    assert _hidden(_log_text(caplog))


# -- the command --------------------------------------------------------------------------


def test_url_review5_the_command_never_prints_the_token(
    nats_url: str, nats_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("typer")
    from brokerkit.cli._app import run

    url = nats_url.replace("nats://", f"nats://{quote(TOKEN, safe='')}@", 1)
    url += f"?prefix={nats_prefix}"
    assert run(["publish", url, "orders", "hello"]) == 0
    assert run(["inspect", url, "orders"]) == 0
    assert run(["inspect", url, "orders", "--json"]) == 0
    assert run(["inspect", url, "nothing.here"]) != 0  # "not found on <url>"
    dead = f"nats+core://{quote(TOKEN, safe='')}@127.0.0.1:{_free_port()}?connect_timeout=0.5"
    assert run(["publish", dead, "orders", "hello"]) != 0
    captured = capsys.readouterr()
    assert "***@127.0.0.1" in captured.out + captured.err
    assert _hidden(captured.out + captured.err), captured
