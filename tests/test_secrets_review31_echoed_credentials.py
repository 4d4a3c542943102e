"""A Redis server echoes the arguments of a command it does not know ("unknown command
'HELLO', with args beginning with: '3' 'AUTH' 'default' '<password>'"): a server
without ``HELLO`` (Redis before 6, a proxy, a server that renamed it) given the URL's
``protocol=3``, which redis-py then does not fall back from, or without ``AUTH`` too
(redis-py's RESP2 fallback sends ``AUTH <password>``). brokerkit put that reply, the
password in it, into its error's message, and left it in the redis-py error of its
``__cause__``, which a printed traceback shows; and a sentinel's such reply into the
WARNING naming the sentinel. Each is checked against a real redis-server whose
``HELLO`` and ``AUTH`` are renamed away, on the sync and the asyncio API."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from urllib.parse import quote

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import BrokerError
from tests.redis_server import RedisServer

PASSWORD = "Echo3dPassw0rd-31"
SENTINEL_PASSWORD = "Echo3dSentinelPw-31"


@pytest.fixture(scope="module")
def no_hello() -> Iterator[RedisServer]:
    """A real server that knows neither HELLO nor AUTH (renamed away)."""
    config = ("--rename-command", "HELLO", '""', "--rename-command", "AUTH", '""')
    with RedisServer(config=tuple(c.strip('"') for c in config)) as server:
        yield server


def _urls(port: int) -> dict[str, str]:
    password = quote(PASSWORD, safe="")
    base = "reconnect_timeout=1&prefix=bk31echo"
    return {
        "protocol=3": f"redis+stream://:{password}@127.0.0.1:{port}/0?protocol=3&{base}",
        "user, protocol=3": f"redis+list://app:{password}@127.0.0.1:{port}/0?protocol=3&{base}",
        "resp2 fallback": f"redis+pubsub://:{password}@127.0.0.1:{port}/0?{base}",
        "sentinel": (
            f"redis+stream://:{password}@127.0.0.1:{port}/0?{base}&sentinel=mymaster"
            f"&sentinel_password={quote(SENTINEL_PASSWORD, safe='')}"
        ),
    }


CASES = ["protocol=3", "user, protocol=3", "resp2 fallback", "sentinel"]


def _shown(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """All the text that shows the error: its print with its chain, its repr, and
    every log line (with their tracebacks) written meanwhile."""
    lines = [caplog.text, repr(error), repr(error.args)]
    lines += [
        str(record.msg) % record.args if record.args else str(record.msg)
        for record in caplog.records
    ]
    return "".join(traceback.format_exception(error)) + "\n".join(lines)


def _check(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    shown = _shown(error, caplog)
    assert isinstance(error, BrokerError)
    for secret in (PASSWORD, SENTINEL_PASSWORD, quote(PASSWORD, safe="")):
        assert secret not in shown
    # the echo's beginning still says what the server did not know
    assert "unknown command" in shown


@pytest.mark.parametrize("case", CASES)
def test_sync_errors_and_logs_never_echo_the_password(
    no_hello: RedisServer, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = _urls(no_hello.port)[case]

    def main() -> None:
        broker = brokerkit.connect(url)
        try:
            broker.publish("t", b"x")
        finally:
            broker.close()

    with pytest.raises(BrokerError) as caught:
        main()
    _check(caught.value, caplog)


@pytest.mark.parametrize("case", CASES)
def test_asyncio_errors_and_logs_never_echo_the_password(
    no_hello: RedisServer, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = _urls(no_hello.port)[case]

    async def main() -> None:
        broker = await brokerkit.aio.connect(url)
        try:
            await broker.publish("t", b"x")
        finally:
            await broker.close()

    with pytest.raises(BrokerError) as caught:
        asyncio.run(main())
    _check(caught.value, caplog)
