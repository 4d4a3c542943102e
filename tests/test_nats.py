"""The NATS JetStream backend against the real server: what the contract suite does not
reach (dead letters as JetStream stores them, in_progress, renewals, AckWait,
cancellation, inspect and purge, a cut connection, a restarted server, one that forgot
a delivery)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import nats as nats_py
import pytest
from nats.aio.client import ServerVersion

import brokerkit
import brokerkit.aio
from brokerkit.backends.nats._server import redelivery_count_warning
from brokerkit.backends.nats._wire import consumer_name
from brokerkit.backends.nats.broker import AsyncNatsBroker
from brokerkit.backends.nats.sync import NatsBroker
from brokerkit.exceptions import ConnectionFailed, InvalidOption, StaleDelivery
from tests.nats_server import NatsServer, nats, nats_address

__all__ = ["nats"]  # a fixture


def test_registered_for_the_nats_scheme_on_both_apis(
    nats: Callable[..., Any], nats_url: str
) -> None:
    assert isinstance(nats(), NatsBroker)

    async def main() -> None:
        broker = await brokerkit.aio.connect(nats_url, prefix="unused")
        assert isinstance(broker, AsyncNatsBroker)
        await broker.close()

    asyncio.run(main())


def test_bad_prefix_and_start_are_refused_clearly(nats: Callable[..., Any], nats_url: str) -> None:
    with pytest.raises(InvalidOption, match="prefix must be"):
        brokerkit.connect(nats_url, prefix="a.b")
    with pytest.raises(InvalidOption, match="not a position on NATS"):
        nats().subscribe("t", group="g", start="yesterday")


def test_nack_without_requeue_lands_in_the_dead_letter_topic(nats: Callable[..., Any]) -> None:
    broker = nats()
    subscription = broker.subscribe("orders")
    message_id = broker.publish("orders", {"n": 1}, headers={"trace-id": "t"})
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    delivery.nack(requeue=False)
    assert subscription.receive(timeout=0.2) is None, "a rejected message came back"
    info = broker.inspect("orders")
    assert (info.dead_lettered, info.in_flight) == (1, 0)
    dead = broker.subscribe("orders.dlq").receive(timeout=5)
    assert dead is not None and dead.id == message_id
    assert dead.headers["x-dead-letter-reason"] == "rejected"
    assert dead.headers["trace-id"] == "t"
    dead.ack()


def test_redelivered_after_ack_wait_when_the_holder_is_gone(nats: Callable[..., Any]) -> None:
    crashed, survivor = nats(visibility_timeout=0.5), nats(visibility_timeout=0.5)
    crashed.publish("jobs", "work")
    held = crashed.subscribe("jobs").receive(timeout=5)
    assert held is not None and held.attempt == 1
    assert crashed.inspect("jobs").in_flight == 1
    crashed.close()
    again = survivor.subscribe("jobs").receive(timeout=5)
    assert again is not None, "the message did not come back after AckWait"
    assert (again.id, again.attempt, again.redelivered) == (held.id, 2, True)
    again.ack()


#: The lease of the holds below: 2 s, not 1 (a round of a loaded machine, an extend or
#: a renewal and a 0.4 s wait, may take far more than 0.4 s: 1 s left little room).
_LEASE = 2.0


def _hold_past_the_lease(
    broker: Any, rival: Any, *, extend: bool, rounds: int = 10
) -> tuple[Any, list[Any]]:
    """Hold a delivery of ``broker`` for ``rounds`` x 0.4 s (past a 2 s lease, by 2 s)
    while ``rival`` polls the same group; return the delivery and what the rival got."""
    broker.publish("slow", "work")
    delivery = broker.subscribe("slow").receive(timeout=5)
    assert delivery is not None
    watcher = rival.subscribe("slow")
    stolen = []
    for _ in range(rounds):
        if extend:
            delivery.extend()
        got = watcher.receive(timeout=0.4)  # the wait between renewals, and the check
        if got is not None:
            stolen.append(got)
    return delivery, stolen


def test_extend_sends_in_progress_and_keeps_the_lease(nats: Callable[..., Any]) -> None:
    broker, rival = nats(visibility_timeout=_LEASE), nats(visibility_timeout=_LEASE)
    broker._suspend_renewals()
    delivery, stolen = _hold_past_the_lease(broker, rival, extend=True)
    assert stolen == [], "the lease ran out although it was extended"
    delivery.ack()


def test_without_extend_or_renewals_the_lease_runs_out(nats: Callable[..., Any]) -> None:
    """The control for the two tests around it: the same hold, no renewal, is lost."""
    broker, rival = nats(visibility_timeout=_LEASE), nats(visibility_timeout=_LEASE)
    broker._suspend_renewals()
    delivery, stolen = _hold_past_the_lease(broker, rival, extend=False)
    assert [d.id for d in stolen] == [delivery.id]
    with pytest.raises(StaleDelivery):
        delivery.ack()
    stolen[0].ack()


def test_a_live_broker_renews_what_it_holds(nats: Callable[..., Any]) -> None:
    broker, rival = nats(visibility_timeout=_LEASE), nats(visibility_timeout=_LEASE)
    delivery, stolen = _hold_past_the_lease(broker, rival, extend=False)
    assert stolen == [], "a live consumer lost its lease: renewals did not run"
    delivery.ack()


def test_inspect_and_purge(nats: Callable[..., Any]) -> None:
    broker = nats()
    broker.publish_many("stock", ["a", "b", "c"])
    delivery = broker.subscribe("stock", group="pickers").receive(timeout=5)
    assert delivery is not None
    info = broker.inspect("stock")
    assert (info.length, info.in_flight) == (3, 1)
    (group,) = info.groups
    assert (group.name, group.pending, group.lag) == ("pickers", 1, 2)
    assert broker.purge("stock") == 3
    assert broker.inspect("stock").length == 0
    assert broker.inspect("other").length == 0


def test_an_ack_after_the_group_was_deleted_is_stale(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    """An operator deleted the group's consumer (``nats consumer rm``): nobody takes
    the ack (status 503), and it raises StaleDelivery."""
    broker = nats()
    broker.publish("stock", "a")
    delivery = broker.subscribe("stock", group="pickers").receive(timeout=5)
    assert delivery is not None

    async def delete_consumer() -> None:
        nc = await nats_py.connect(nats_url)
        try:
            await nc.jetstream().delete_consumer(nats_prefix, consumer_name("stock", "pickers"))
        finally:
            await nc.close()

    asyncio.run(delete_consumer())
    with pytest.raises(StaleDelivery):
        delivery.ack()


def test_a_consumer_task_cancelled_mid_batch_strands_nothing(
    nats_url: str, nats_prefix: str
) -> None:
    """A task reading with prefetch=10 is cancelled after one delivery: the nine it
    fetched and never returned go back at once (not after the 30 s AckWait)."""

    async def main() -> None:
        async with brokerkit.aio.connect(nats_url, prefix=nats_prefix) as broker:
            ids = await broker.publish_many("batch", range(10))
            first: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            async def consume() -> None:
                async for delivery in broker.consume("batch", prefetch=10):
                    first.set_result(delivery.id)
                    await asyncio.Event().wait()  # busy with it until cancelled

            task = asyncio.create_task(consume())
            taken = await asyncio.wait_for(first, 5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            other = await broker.subscribe("batch", prefetch=10)
            got = []
            while len(got) < 9:
                delivery = await other.receive(timeout=5)
                assert delivery is not None, f"stranded: only {len(got)} of 9 came back"
                got.append(delivery.id)
                await delivery.ack()
            assert sorted(got) == sorted(i for i in ids if i != taken)

    asyncio.run(main())


class _Proxy:
    """A TCP proxy on a free local port in front of the NATS server at ``upstream``;
    :meth:`cut` drops every connection through it (new ones are accepted again)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.cut()
        self._listener.close()


def test_a_cut_connection_does_not_stop_publishing_or_consuming(
    nats: Callable[..., Any], nats_url: str
) -> None:
    proxy = _Proxy(nats_address(nats_url))
    try:
        broker = nats(f"nats://127.0.0.1:{proxy.port}", visibility_timeout=30)
        subscription = broker.subscribe("flaky")
        broker.publish("flaky", "before")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "before"
        proxy.cut()
        assert subscription.receive(timeout=0.5) is None  # the loop goes on, empty
        broker.publish("flaky", "after")  # retried until the client is back
        deadline = time.monotonic() + 15
        got = None
        while got is None and time.monotonic() < deadline:
            got = subscription.receive(timeout=1)  # never raises on a lost connection
        assert got is not None and got.body == "after", "consuming stopped after the cut"
        got.ack()
        delivery.ack()  # leased before the cut, still held: the server knows it
        assert broker.inspect("flaky").in_flight == 0
    finally:
        proxy.close()


def test_a_restarted_server_keeps_the_stream_and_the_lease() -> None:
    """A restart on the same port and store: what was stored is delivered, leases
    taken before it are acked after it (the server asked once what its group has
    delivered, not once an ack), and publishing and consuming go on through the
    reconnection (a server of this test's own: the others' stays up)."""
    server = NatsServer()
    try:
        server.start()
        # (an ack wait so long that the background renewal never runs meanwhile)
        with brokerkit.connect(server.url, prefix="restarts", visibility_timeout=600) as broker:
            subscription = broker.subscribe("orders", prefetch=2)
            broker.publish_many("orders", ["held", "also held", "stored"])
            held = [subscription.receive(timeout=5) for _ in range(2)]
            assert [d.body if d else None for d in held] == ["held", "also held"]
            client = broker.inner._client
            asked: list[str] = []
            api = client.api

            async def counted(subject: str, body: Any, what: str) -> Any:
                if what == "check the leases held":  # (not the renewals' AckWait check)
                    asked.append(subject)
                return await api(subject, body, what)

            client.api = counted
            server.kill(gracefully=True)
            server.start()
            broker.publish("orders", "after")  # retried until the client is back
            for delivery in held:
                delivery.ack()
            assert len([s for s in asked if s.startswith("CONSUMER.INFO")]) == 1
            assert _bodies(subscription, 2) == ["stored", "after"]
            assert subscription.receive(timeout=0.5) is None, "the acked lease came back"
            assert broker.inspect("orders").in_flight == 0
    finally:
        server.stop()


def test_leases_the_restarted_server_forgot_are_stale() -> None:
    """kill -9, and the server comes back from a store written before the deliveries
    (as when it died before writing them): it would never answer an ack of them, and
    would take a nack or an extend without a word. Each raises StaleDelivery (no wait
    for reconnect_timeout, no lease kept renewing, no dead letter of a message that
    comes again), and the messages come again."""
    server = NatsServer()
    snapshot = server.store.with_name("store-before")
    try:
        server.start()
        with brokerkit.connect(server.url, prefix="forgets", visibility_timeout=30) as broker:
            subscription = broker.subscribe("orders", prefetch=4)
            broker.publish_many("orders", ["acked", "nacked", "extended", "rejected"])
            server.kill(gracefully=True)
            shutil.copytree(server.store, snapshot)
            server.start()
            held = [subscription.receive(timeout=10) for _ in range(4)]
            bodies = ["acked", "nacked", "extended", "rejected"]
            assert [d.body if d else None for d in held] == bodies
            server.kill()
            shutil.rmtree(server.store)
            shutil.copytree(snapshot, server.store)
            server.start()
            broker.publish("orders", "after")  # the client is back
            with pytest.raises(StaleDelivery):
                held[0].ack()
            with pytest.raises(StaleDelivery):
                held[1].nack()
            with pytest.raises(StaleDelivery):
                held[2].extend(30)
            with pytest.raises(StaleDelivery):
                held[3].nack(requeue=False)
            assert broker.inner._leases == {}, "a forgotten lease is still renewed"
            assert _bodies(subscription, 5) == [*bodies, "after"]
            assert broker.inspect("orders.dlq").length == 0, "dead-lettered, and it comes again"
    finally:
        server.stop()  # the snapshot too


def _bodies(subscription: brokerkit.Subscription, count: int) -> list[Any]:
    """The bodies of the next ``count`` deliveries (each acked), within 15 s."""
    got = []
    deadline = time.monotonic() + 15
    while len(got) < count and time.monotonic() < deadline:
        delivery = subscription.receive(timeout=1)
        if delivery is not None:
            got.append(delivery.body)
            delivery.ack()
    return got


def test_an_unreachable_server_fails_clearly_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    broker = brokerkit.connect(f"nats://ann:s3cret@127.0.0.1:{port}", connect_timeout=0.5)
    try:
        with pytest.raises(
            ConnectionFailed, match=f"could not connect to NATS at 127.0.0.1:{port}"
        ):
            broker.publish("t", "x")
        assert "s3cret" not in repr(broker)
        assert "s3cret" not in caplog.text
    finally:
        broker.close()


def test_without_nats_py_the_error_says_what_to_install() -> None:
    """``import brokerkit`` never imports nats-py; a nats:// URL then says what is missing."""
    script = (
        "import sys; sys.modules['nats'] = None\n"
        "import brokerkit\n"
        "assert 'nats' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
        "try:\n"
        "    brokerkit.connect('nats://127.0.0.1:4222')\n"
        "except brokerkit.BackendUnavailable as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert 'pip install "pybrokerkit[nats]"' in out


@pytest.mark.parametrize("requeue", [False, True])
def test_a_nack_reason_is_recorded_on_the_dead_letter(
    nats: Callable[..., Any], requeue: bool
) -> None:
    broker = nats(max_deliveries=1)
    subscription = broker.subscribe("orders")
    broker.publish("orders", "x")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    delivery.nack(requeue=requeue, reason="ValueError: bad order")
    dead = broker.subscribe("orders.dlq").receive(timeout=5)
    assert dead is not None and dead.headers["x-dead-letter-reason"] == "ValueError: bad order"
    dead.ack()


@pytest.mark.parametrize(
    ("version", "miscounts"),
    [("2.9.10", True), ("2.10.13", True), ("2.10.14", False), ("2.15.1", False),
     ("3.0.0-beta.1", False), ("0.0.0-unknown", False), ("v2", False)],
)  # fmt: skip
def test_a_server_that_miscounts_redeliveries_is_named(version: str, miscounts: bool) -> None:
    """Before 2.10.14 nats-server can serve a redelivery again as a first delivery
    (nats-io/nats-server#5305): Delivery.attempt and max_deliveries then undercount."""
    warning = redelivery_count_warning(ServerVersion(version))
    if miscounts:
        assert warning is not None
        assert f"nats-server {version} " in warning
        assert "nats-io/nats-server#5305, fixed in 2.10.14" in warning
    else:
        assert warning is None


@pytest.mark.parametrize("reported", ["2.9.10", "2.10.14"])
def test_a_consumer_is_warned_once_of_a_server_that_miscounts(
    nats: Callable[..., Any], caplog: pytest.LogCaptureFixture, reported: str
) -> None:
    """The version is the one nats-py holds from the server's INFO, set here (the
    tests' own server is newer than any that miscounts)."""
    broker = nats()
    broker.publish("orders", "x")  # connected
    broker.inner._client._nc._current_server.server_version = reported
    with caplog.at_level(logging.WARNING, logger="brokerkit.nats"):
        broker.subscribe("orders")
        broker.subscribe("invoices")
    warnings = [r.getMessage() for r in caplog.records if r.name == "brokerkit.nats"]
    if reported == "2.9.10":
        assert len(warnings) == 1 and f"nats-server {reported} can hand out" in warnings[0]
    else:
        assert warnings == []


def test_no_delay_is_declared_and_one_is_refused(nats: Callable[..., Any]) -> None:
    broker = nats()
    assert brokerkit.Capability.DELAY not in broker.capabilities
    with pytest.raises(brokerkit.Unsupported, match="DELAY"):
        broker.publish("orders", "x", delay=1)
