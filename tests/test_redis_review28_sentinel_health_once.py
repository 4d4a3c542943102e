"""One broker's sentinel health (which sentinels failed when last asked, told once per
change) is one object shared by all of its clients, however they are made: two
clients made at the same moment (two threads each opening a connection) each built
their own, as ``health_of`` looked the broker's up and stored a new one in two steps,
so a sentinel going bad was told twice, once by each."""

from __future__ import annotations

import contextlib
import threading

from brokerkit._url import BrokerURL
from brokerkit.backends.redis import _sentinel_health
from brokerkit.backends.redis._options import RedisOptions


def test_clients_made_at_once_share_one_health() -> None:
    both_inside = threading.Barrier(2)

    class Meeting(_sentinel_health.SentinelHealth):
        """Waits (up to 5 s) in its constructor until another is being built too:
        the moment two threads both found no health for the broker."""

        def __init__(self, url: BrokerURL) -> None:
            # built alone (BrokenBarrierError): the other thread waited for this one
            with contextlib.suppress(threading.BrokenBarrierError):
                both_inside.wait(5)
            super().__init__(url)

    url = BrokerURL.parse("redis+list://127.0.0.1:26379/0?sentinel=mymaster")
    options = RedisOptions()
    found: list[_sentinel_health.SentinelHealth] = []
    original = _sentinel_health.SentinelHealth
    _sentinel_health.SentinelHealth = Meeting  # type: ignore[misc]
    try:
        threads = [
            threading.Thread(target=lambda: found.append(_sentinel_health.health_of(url, options)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        _sentinel_health.SentinelHealth = original  # type: ignore[misc]
    assert len(found) == 2
    assert found[0] is found[1], "two healths for one broker: each warns"
