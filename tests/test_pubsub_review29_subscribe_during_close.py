"""redis+pubsub: a subscribe that the broker's close overtook leaves no subscription
behind.

A subscribe rides out a server restart (it retries for ``reconnect_timeout``); a
close meanwhile waits for it a few seconds, then closes what it knows and returns.
The subscribe that succeeded after that raised ``BrokerClosed``, as it should, but
left its connection open and subscribed: nobody would ever close it, and Redis went
on counting it as a receiver of every message on the channel.
"""

from __future__ import annotations

import threading

import pytest

import brokerkit
import brokerkit._broker
from brokerkit.exceptions import BrokerClosed
from tests.redis_server import RedisServer, wait_until

#: Far longer than a resubscription after the restart takes.
WAIT = 20.0


def test_a_subscribe_that_outlived_the_close_is_closed(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How long close() waits for the subscribes under way (5 s): shortened, so that it
    # gives up on the one held up by the restart below.
    monkeypatch.setattr(brokerkit._broker, "_SUBSCRIBE_WAIT", 0.1)
    broker = brokerkit.connect(redis_server.url("redis+pubsub"))
    broker.publish("t", "the server is reached: a restart is waited out")
    redis_server.kill()
    outcome: list[BaseException | object] = []

    def subscribe() -> None:
        try:
            outcome.append(broker.subscribe("t"))
        except BaseException as exc:  # checked below
            outcome.append(exc)

    subscriber = threading.Thread(target=subscribe, daemon=True)
    subscriber.start()
    wait_until(lambda: broker._subscribing == 1, WAIT, "the subscribe never began")
    broker.close()
    redis_server.start()
    subscriber.join(WAIT)
    assert not subscriber.is_alive()
    assert isinstance(outcome[0], BrokerClosed)
    client = redis_server.client()
    assert client.pubsub_numsub(broker.channel("t")) == [(broker.channel("t").encode(), 0)]
