"""NATS: a settle held up by a lost connection never reaches the server after the
lease it settles ran out (review 5, finding 1).

JetStream takes a late ack and settles whoever holds the message now. A settle
issued while the connection is cut must therefore not be buffered by nats-py and
flushed on reconnect, nor sent again after the lease: once the lease has run out it
raises StaleDelivery without reaching the server, and the consumer the message went
to meanwhile keeps its delivery (its nack still brings the message back).

The cut is a real one: a TCP proxy (:class:`CutProxy`) in front of this test
process's nats-server drops every connection and refuses new ones until restored.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit.exceptions import StaleDelivery
from tests.nats_server import nats, nats_address
from tests.waiting import wait_until

__all__ = ["CutProxy", "nats"]  # (nats: a fixture)


class CutProxy:
    """A TCP proxy on a free local port in front of ``upstream``: :meth:`cut` drops
    every connection through it and refuses new ones (each is closed at once) until
    :meth:`restore`; :meth:`close` ends it and joins its threads."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self._up.is_set():
                client.close()  # refused while cut
                continue
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pipe, client, upstream)
            self._spawn(self._pipe, upstream, client)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)


def disconnected(broker: Any) -> bool:
    """Whether nats-py knows that ``broker``'s connection is lost."""
    nc = broker.inner._client._nc
    return nc is not None and not nc.is_connected


#: AckWait of the tests' group, in seconds: the lease a settle must keep within.
_ACK_WAIT = 5.0


def _settle(delivery: brokerkit.Delivery, how: str) -> None:
    if how == "ack":
        delivery.ack()
    elif how == "nack":
        delivery.nack()
    elif how == "reject":
        delivery.nack(requeue=False)
    else:
        delivery.extend()


@pytest.mark.parametrize("renewing", [False, True], ids=["settle", "renewer-too"])
@pytest.mark.parametrize("how", ["ack", "nack", "reject", "extend"])
def test_a_settle_held_up_by_a_cut_never_settles_the_next_consumers_delivery(
    nats: Callable[..., Any], nats_url: str, how: str, renewing: bool
) -> None:
    proxy = CutProxy(nats_address(nats_url))
    try:
        # A reaches the server through the proxy, B directly; one group, AckWait 2 s.
        a = nats(
            f"nats://127.0.0.1:{proxy.port}",
            visibility_timeout=_ACK_WAIT,
            reconnect_timeout=20,
        )
        b = nats(visibility_timeout=_ACK_WAIT)
        if not renewing:
            a._suspend_renewals()  # the settle alone, not a renewal, meets the cut
        a_sub = a.subscribe("jobs", group="g", prefetch=1)
        b_sub = b.subscribe("jobs", group="g", prefetch=1)
        b.publish("jobs", "job")
        held = a_sub.receive(timeout=5)
        assert held is not None and held.attempt == 1

        proxy.cut()
        wait_until(lambda: disconnected(a), "A's client to see the cut", within=5)
        outcome: dict[str, Any] = {}

        def settle() -> None:
            try:
                _settle(held, how)
                outcome["result"] = "returned"
            except Exception as exc:
                outcome["result"] = exc
            outcome["ended"] = time.monotonic()

        thread = threading.Thread(target=settle)
        thread.start()  # well within A's lease, while A is cut off
        # The lease runs out on the server: B gets the message.
        again = b_sub.receive(timeout=10)
        assert again is not None and again.body == "job" and again.attempt == 2
        restored = time.monotonic()
        proxy.restore()
        thread.join(30)
        assert not thread.is_alive(), f"A's {how} never ended"

        result = outcome["result"]
        assert isinstance(result, StaleDelivery), (
            f"A's {how}, issued within its lease while cut off, gave {result!r}: it must "
            "raise StaleDelivery once the lease ran out, without reaching the server"
        )
        late = outcome["ended"] - restored
        assert late < 0, (
            f"A's {how} ended {late:.1f} s after the connection came back: it must give up "
            "when its lease runs out (before the message went to B), not wait for the "
            "connection"
        )
        # A is back: whatever it held back must still not reach the server.
        wait_until(lambda: not disconnected(a), "A to reconnect", within=10)
        a.publish("other", "A's connection works")  # (a round trip on it)
        if how == "reject":
            assert b.inspect("jobs.dlq").length == 0, "A dead-lettered B's delivery"
        # B's delivery is B's: its nack brings the message back (not lost, not settled).
        again.nack()
        third = b_sub.receive(timeout=5) or a_sub.receive(timeout=5)
        assert third is not None and third.body == "job", (
            f"the message was lost: A's {how} reached the server late and settled B's delivery"
        )
        assert third.attempt == 3
        third.ack()
    finally:
        proxy.close()
