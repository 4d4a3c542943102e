"""NATS: a pull sent in the moment between nats-py's reconnection and its telling of
it is not lost (review 29: the flaky outage-pulls test at high load).

nats-py marks a reconnected client connected after the server's first PONG, but calls
its ``reconnected_cb`` only after one more round trip (a flush). A receive that polls
the connection in between sends its pull; the callback then bumps the client's
generation while the pull waits for its answer, the pull gives up as "lost with the
connection" (its answer, on a live connection, comes all the same), and what it leased
becomes stragglers, handed back with ``-NAK``: an attempt counted that no handler saw
(with ``max_deliveries=1``, dead-lettered unseen). A slow link (here a proxy adding
latency to what the server sends once the outage is over) widens that moment to
every reconnection.

The bug was the backend's (brokerkit/backends/nats/_client.py: the generation moved at
``reconnected_cb``; it moves when nats-py marks the new connection connected now). It
is what made tests/test_nats_review5_outage_pulls.py fail at high load.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.nats_server import nats, nats_address
from tests.proxies import pipe
from tests.test_nats_review5_late_settle import CutProxy, disconnected
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds the proxy holds each chunk the server sends after the outage.
_LATENCY = 0.3


class SlowAfterCut(CutProxy):
    """A :class:`CutProxy` whose connections made after a :meth:`restore` deliver what
    the server sends :data:`_LATENCY` seconds late (a slow link)."""

    slow = False

    def restore(self) -> None:
        self.slow = True
        super().restore()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:  # type: ignore[override]
        if self.slow and source.getsockname()[1] != self.port:
            _delay_line(source, sink)
        else:
            pipe(source, sink)


def _delay_line(source: socket.socket, sink: socket.socket) -> None:
    """Forward what ``source`` sends to ``sink``, each chunk :data:`_LATENCY` seconds
    after it came (a link's latency: chunks do not wait for each other)."""
    line: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def late(data: bytes, first: bool) -> bytes:
        line.put((time.monotonic() + _LATENCY, data))
        return b""

    def send() -> None:
        with contextlib.suppress(OSError):
            while (item := line.get())[1]:
                time.sleep(max(item[0] - time.monotonic(), 0))  # (the latency itself)
                sink.sendall(item[1])

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        pipe(source, sink, late)
    finally:
        line.put((0.0, b""))
        sender.join(5)


def test_a_pull_sent_as_the_connection_comes_back_counts_no_attempt(
    nats: Callable[..., Any], nats_url: str
) -> None:
    proxy = SlowAfterCut(nats_address(nats_url))
    try:
        broker = nats(f"nats://127.0.0.1:{proxy.port}", visibility_timeout=30, max_deliveries=1)
        broker.publish_many("t", list(range(20)))
        subscription = broker.subscribe("t", group="g", prefetch=5)
        proxy.cut()
        wait_until(lambda: disconnected(broker), "the client seeing the cut", within=5)
        proxy.restore()
        got: dict[int, int] = {}
        deadline = time.monotonic() + 20
        dead = 0
        while len(got) + dead < 20 and time.monotonic() < deadline:
            delivery = subscription.receive(timeout=1)
            if delivery is None:
                dead = broker.inspect("t.dlq").length
            else:
                got[delivery.body] = delivery.attempt
                delivery.ack()
        assert sorted(got) == list(range(20)), (
            f"only {sorted(got)} came after the outage; {dead} dead-lettered unseen"
        )
        assert all(attempt == 1 for attempt in got.values()), got
    finally:
        proxy.close()
