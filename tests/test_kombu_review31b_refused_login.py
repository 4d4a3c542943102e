"""kombu+amqp: RabbitMQ refusing the login (a wrong password, a virtual host that does
not exist) is said as such, at once, and never names the password (review 31b).

The error said "cannot connect ... within reconnect_timeout=30.0s: AccessRefused: ..."
although kombu does not retry a refusal and it came in a fraction of a second: it
claimed a wait that never happened, and did not say what to check.
"""

from __future__ import annotations

import logging
import socket
import traceback
import uuid
from collections.abc import Iterator

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.exceptions import ConnectionFailed
from tests.kombu_rabbitmq import rabbitmq
from tests.test_kombu_review31_blocked_publish import Alarm

__all__ = ["rabbitmq"]

PASSWORD = "Pw-r31b-Zq8vXw"


class _Counting(Alarm):
    """A plain proxy to RabbitMQ (its alarm never set) that counts its connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.connections = 0
        super().__init__(target)

    def serve(self, client: socket.socket) -> None:
        self.connections += 1
        super().serve(client)


@pytest.fixture
def proxy(rabbitmq: str) -> Iterator[_Counting]:
    parsed = BrokerURL.parse(rabbitmq)
    counting = _Counting((parsed.host or "127.0.0.1", parsed.port or 5672))
    try:
        yield counting
    finally:
        counting.close()


def _everything_shown(error: BaseException) -> str:
    """What the error shows: its text, repr, traceback, and those of its chain."""
    shown = []
    seen: BaseException | None = error
    while seen is not None:
        shown += [str(seen), repr(seen), *traceback.format_exception(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(shown)


def _user(parsed: BrokerURL) -> str:
    return parsed.username or "guest"


def test_a_wrong_password_is_refused_access_at_once_saying_so(
    rabbitmq: str, proxy: _Counting, caplog: pytest.LogCaptureFixture
) -> None:
    parsed = BrokerURL.parse(rabbitmq)
    url = f"kombu+amqp://{_user(parsed)}:{PASSWORD}@127.0.0.1:{proxy.port}/"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectionFailed) as failed:
        brokerkit.connect(url, prefix=f"bkk-r31b-{uuid.uuid4().hex[:8]}", reconnect_timeout=30)
    text = str(failed.value)
    assert f"refused access for the user {_user(parsed)!r}" in text, text
    assert "check the user name and password in the URL" in text, text
    assert "not retried" in text, text
    assert "within reconnect_timeout" not in text, text  # (no wait happened)
    assert proxy.connections == 1  # tried once, not for 30 s
    assert PASSWORD not in _everything_shown(failed.value)
    assert PASSWORD not in caplog.text


def test_a_virtual_host_that_does_not_exist_is_named(rabbitmq: str, proxy: _Counting) -> None:
    parsed = BrokerURL.parse(rabbitmq)
    vhost = f"bkk-r31b-none-{uuid.uuid4().hex[:8]}"  # (nothing is created)
    url = f"kombu+amqp://{_user(parsed)}:{parsed.password}@127.0.0.1:{proxy.port}/{vhost}"
    with pytest.raises(ConnectionFailed) as failed:
        brokerkit.connect(url, reconnect_timeout=30)
    text = str(failed.value)
    assert f"the virtual host {vhost!r}" in text and "that it exists" in text, text
    assert "within reconnect_timeout" not in text, text
    assert proxy.connections == 1


def test_a_server_that_is_not_there_still_says_it_waited() -> None:
    # (a passing fault: kombu retries it for reconnect_timeout, and the error says so)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(ConnectionFailed, match=r"within reconnect_timeout=0.3s"):
        brokerkit.connect(f"kombu+amqp://u:{PASSWORD}@127.0.0.1:{port}/", reconnect_timeout=0.3)
