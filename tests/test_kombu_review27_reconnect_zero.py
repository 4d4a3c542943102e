"""kombu+amqp with ``reconnect_timeout=0``: no time to keep reconnecting, so a
connection that cannot be made fails after one attempt, as on every other backend
(kombu+redis, NATS). It reconnected for ever instead (no window at all was taken as
no limit): ``connect()`` to a server that is not there never returned. Nothing
listens on port 1; pytest-timeout stops the test if the connect hangs."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import ConnectionFailed


@pytest.mark.timeout(30)
def test_no_reconnect_time_fails_after_one_attempt() -> None:
    with pytest.raises(ConnectionFailed, match="reconnect_timeout=0"):
        brokerkit.connect(
            "kombu+amqp://guest:guest@127.0.0.1:1/", reconnect_timeout=0, connect_timeout=1
        )
