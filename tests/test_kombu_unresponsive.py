"""kombu+amqp against a RabbitMQ that stops answering, through TLS, and at its limits:
bounded waits (receive, publish, close), the TLS host-name check, a message over
``max_message_size``, a broker dropped unclosed, and the reserved ``amq.`` prefix.

A server that stops answering is played by :class:`~tests.proxies.BlackHole` in front
of the test RabbitMQ.
"""

from __future__ import annotations

import gc
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.exceptions import BrokerClosed, ConnectionFailed, InvalidMessage, InvalidOption
from tests.kombu_rabbitmq import amqp_url, close_and_delete, delete_names, kombu_broker, rabbitmq
from tests.proxies import BlackHole, Listener
from tests.redis_tls import TLSFiles, make_certificates
from tests.waiting import wait_until

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

#: The bound each wait below gets: far past what brokerkit needs (a few seconds with
#: heartbeat=2), far short of the forever the bugs these tests guard against took.
_BOUND = 60.0
#: The heartbeat of the brokers that must notice a silent server: 2 s, not 1 (a loaded
#: machine missed 1 s heartbeats before the silence, dropping a live connection).
_HEARTBEAT = 2


def _call_within(action: Callable[[], Any], seconds: float = _BOUND) -> Any:
    """``action()`` in a thread: what it returned or raised, failing the test if it is
    still blocked after ``seconds``."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:  # handed to the test's assertions
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{action} was still blocked after {seconds:.0f} s")
    return outcome[0]


@pytest.fixture
def hole(rabbitmq: str) -> Iterator[BlackHole]:
    parsed = BrokerURL.parse(rabbitmq)
    proxy = BlackHole((parsed.host or "127.0.0.1", parsed.port or 5672))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def through(rabbitmq: str, hole: BlackHole) -> Iterator[Factory]:
    """``through(**options)``: a kombu+amqp broker connected through the black hole,
    under this test's own prefix; closed, and what it declared deleted, at the end."""
    parsed = BrokerURL.parse(rabbitmq)
    url = f"kombu+amqp://{parsed.username}:{parsed.password}@127.0.0.1:{hole.port}{parsed.path}"
    prefix = f"bkk-{uuid.uuid4().hex[:12]}"
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        broker = brokerkit.connect(url, prefix=prefix, **options)
        made.append(broker)
        return broker

    try:
        yield factory
    finally:
        hole.close()  # (the connections die: each close below ends at once)
        close_and_delete(made)


# -- a server that stops answering ------------------------------------------------


def test_receive_and_publish_give_up_on_a_server_that_stopped_answering(
    through: Factory, hole: BlackHole
) -> None:
    broker = through(heartbeat=_HEARTBEAT, reconnect_timeout=2, connect_timeout=1)
    subscription = broker.subscribe("silent", group="g")
    broker.publish("silent", b"before")
    delivery = subscription.receive(timeout=10)
    assert delivery is not None
    delivery.ack()
    hole.frozen.set()
    outcome = _call_within(lambda: subscription.receive(timeout=1))
    assert isinstance(outcome, ConnectionFailed), (
        f"a receive from a silent server is a lost connection, got {outcome!r}"
    )
    outcome = _call_within(lambda: broker.publish("silent", b"after"))
    assert isinstance(outcome, ConnectionFailed), (
        f"a publish to a silent server is a lost connection, got {outcome!r}"
    )
    assert _call_within(broker.close) is None


def test_an_idle_consumer_notices_that_the_server_went_silent(
    through: Factory, hole: BlackHole
) -> None:
    broker = through(heartbeat=_HEARTBEAT, reconnect_timeout=2, connect_timeout=1)
    subscription = broker.subscribe("idle")
    # Waiting on an empty queue registers a consumer: from then on a receive only
    # listens for what the server pushes, and a silent server pushes nothing.
    assert subscription.receive(timeout=0.3) is None
    hole.frozen.set()

    def receive_until_it_fails() -> Any:
        deadline = time.monotonic() + _BOUND
        while time.monotonic() < deadline:
            subscription.receive(timeout=0.5)
        return "receive returned None for a minute, never noticing the silent server"

    outcome = _call_within(receive_until_it_fails, _BOUND + 10)
    assert isinstance(outcome, ConnectionFailed), outcome


def test_close_ends_while_a_receive_waits_on_a_silent_server(
    through: Factory, hole: BlackHole
) -> None:
    # With a 60 s heartbeat the socket's own timeout (two heartbeats) is far off: the
    # close itself must end the receive's wait.
    broker = through(heartbeat=60, reconnect_timeout=2, connect_timeout=1)
    subscription = broker.subscribe("stuck")
    hole.frozen.set()
    outcome: list[Any] = []

    def receive() -> None:
        try:
            outcome.append(subscription.receive(timeout=5))
        except BaseException as exc:  # handed to the assertions
            outcome.append(exc)

    receiving = threading.Thread(target=receive, daemon=True)
    receiving.start()
    wait_until(lambda: hole.swallowed > 0, "the receive's basic.get", within=10)
    # ... and now waits, holding the connection, for an answer that never comes.
    assert _call_within(broker.close, 30) is None
    receiving.join(30)
    assert not receiving.is_alive(), "the receive still waits after close() returned"
    assert outcome == [None] or isinstance(outcome[0], BrokerClosed), outcome


# -- TLS ------------------------------------------------------------------------------


class TLSFront(Listener):
    """A TLS server in front of the test RabbitMQ (which listens without TLS), with a
    certificate for the IP address 127.0.0.1 only, signed by a test CA."""

    def __init__(self, files: TLSFiles, target: tuple[str, int]) -> None:
        self.files = files
        self._target = target
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(files.server_cert), str(files.server_key))
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            tls = self._context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):  # the client refused the certificate
            client.close()
            return
        tls.settimeout(None)
        upstream = socket.create_connection(self._target)
        self.keep(tls, upstream)
        self.spawn(self._pipe, tls, upstream)

    def _pipe(self, tls: ssl.SSLSocket, upstream: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                if tls.pending():
                    readable: list[Any] = [tls]
                else:
                    readable, _, _ = select.select([tls, upstream], [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is tls else tls).sendall(data)
        except (OSError, ValueError):  # (ValueError: select on a socket closed under it)
            pass  # closed under it
        finally:
            tls.close()
            upstream.close()

    def url(self, host: str, query: str = "") -> str:
        parsed = BrokerURL.parse(amqp_url())
        auth = f"{parsed.username}:{parsed.password}@"
        return f"kombu+amqps://{auth}{host}:{self.port}{parsed.path or '/'}{query}"


@pytest.fixture
def tls_front(rabbitmq: str, tmp_path: Path) -> Iterator[TLSFront]:
    if shutil.which("openssl") is None:
        pytest.skip("the TLS tests need the openssl command-line tool on PATH")
    parsed = BrokerURL.parse(rabbitmq)
    front = TLSFront(make_certificates(tmp_path), (parsed.host or "127.0.0.1", parsed.port or 5672))
    try:
        yield front
    finally:
        front.close()


def _refusal(url: str) -> ConnectionFailed:
    """The ConnectionFailed that connecting to ``url`` raises (failing the test if it
    connects)."""
    try:
        broker = brokerkit.connect(url, reconnect_timeout=1, connect_timeout=3)
    except ConnectionFailed as exc:
        return exc
    broker.close()
    pytest.fail(f"connected to {url} through a certificate that must be refused")


def test_amqps_refuses_a_certificate_issued_to_another_host(
    tls_front: TLSFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test CA is trusted as a system CA would be: only the host name is wrong
    # (the certificate names 127.0.0.1, the URL localhost).
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_front.files.ca))
    refused = _refusal(tls_front.url("localhost"))
    assert "certificate" in str(refused) and "localhost" in str(refused), refused


def test_amqps_verifies_against_a_private_ca_given_in_the_url(tls_front: TLSFront) -> None:
    prefix = f"bkk-{uuid.uuid4().hex[:12]}"
    ca = f"?ssl_ca_certs={tls_front.files.ca}&prefix={prefix}"
    broker: Any = brokerkit.connect(tls_front.url("127.0.0.1", ca), reconnect_timeout=5)
    try:
        subscription = broker.subscribe("tls")
        sent = broker.publish("tls", b"over TLS")
        delivery = subscription.receive(timeout=10)
        assert delivery is not None and delivery.id == sent
        delivery.ack()
    finally:
        broker.close()
        delete_names(set(broker.declared.exchanges), set(broker.declared.queues))
    assert "certificate" in str(_refusal(tls_front.url("localhost", ca)))
    other = f"?ssl_ca_certs={tls_front.files.other_ca}&prefix={prefix}"
    assert "certificate" in str(_refusal(tls_front.url("127.0.0.1", other)))


def test_a_receive_gives_up_on_a_silent_server_over_tls(rabbitmq: str, tls_front: TLSFront) -> None:
    # The black hole in front of the TLS server: TLS itself goes silent too.
    hole = BlackHole(("127.0.0.1", tls_front.port))
    url = tls_front.url("127.0.0.1", f"?ssl_ca_certs={tls_front.files.ca}")
    url = url.replace(f":{tls_front.port}/", f":{hole.port}/")
    prefix = f"bkk-{uuid.uuid4().hex[:12]}"
    broker: Any = brokerkit.connect(
        url, prefix=prefix, heartbeat=_HEARTBEAT, reconnect_timeout=2, connect_timeout=1
    )
    try:
        subscription = broker.subscribe("silent")
        broker.publish("silent", b"before")
        delivery = subscription.receive(timeout=10)
        assert delivery is not None
        delivery.ack()
        hole.frozen.set()
        outcome = _call_within(lambda: subscription.receive(timeout=1))
        assert isinstance(outcome, ConnectionFailed), outcome
    finally:
        hole.close()
        broker.close()
        delete_names(set(broker.declared.exchanges), set(broker.declared.queues))


def test_tls_options_are_checked_at_connect(rabbitmq: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidOption, match="kombu\\+amqps"):
        brokerkit.connect(rabbitmq, ssl_ca_certs=__file__)
    with pytest.raises(InvalidOption, match=r"ssl_ca_certs.*no such file"):
        brokerkit.connect(
            "kombu+amqps://guest:guest@127.0.0.1:1/", ssl_ca_certs=str(tmp_path / "none.pem")
        )


# -- limits ---------------------------------------------------------------------------


def _max_message_size() -> int:
    """The test RabbitMQ's max_message_size, as rabbitmqctl reports it."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("rabbitmqctl is needed to read RabbitMQ's max_message_size")
    out = subprocess.run(
        [ctl, "-q", "eval", "application:get_env(rabbit, max_message_size)."],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return int(out.strip().removeprefix("{ok,").removesuffix("}"))


@pytest.mark.timeout(300)
def test_a_message_over_max_message_size_is_an_invalid_message(kombu_broker: Factory) -> None:
    limit = _max_message_size()
    broker = kombu_broker()
    subscription = broker.subscribe("big")
    with pytest.raises(InvalidMessage, match=f"{limit:,} bytes") as refused:
        broker.publish("big", b"x" * (limit + 1))  # one such publish: a few hundred MB
    assert f"{limit + 1:,} bytes" in str(refused.value)
    # Now known, the limit refuses the next one before anything is sent.
    with pytest.raises(InvalidMessage, match="nothing was published"):
        broker.publish("big", b"x" * (limit + 1))
    sent = broker.publish("big", b"small")
    delivery = subscription.receive(timeout=10)
    assert delivery is not None and delivery.id == sent, "publishing carries on"
    delivery.ack()


def _rabbitmq_lists(connection_name: str) -> bool:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("rabbitmqctl is needed to list RabbitMQ's connections")
    listed = subprocess.run(
        [ctl, "-q", "list_connections", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return connection_name in listed


def test_a_broker_dropped_unclosed_lets_go_of_its_thread_and_connections(rabbitmq: str) -> None:
    broker: Any = brokerkit.connect(rabbitmq, prefix=f"bkk-{uuid.uuid4().hex[:12]}")
    declared = broker.declared
    try:
        subscription = broker.subscribe("dropped")
        broker.publish("dropped", b"x")
        delivery = subscription.receive(timeout=10)
        assert delivery is not None
        delivery.ack()
        assert subscription.receive(timeout=0.2) is None  # a consumer waits, registered
        name = broker.connection_name
        assert _rabbitmq_lists(name)
        declared = broker.declared
        dropped = weakref.ref(broker)
        del broker, subscription, delivery

        def collected() -> bool:
            gc.collect()
            return dropped() is None

        wait_until(collected, "the dropped broker to be collected", within=10)
        wait_until(
            lambda: not any(t.name == f"brokerkit-reaper-{name}" for t in threading.enumerate()),
            "the dropped broker's reaper thread to end",
            within=15,
        )
        wait_until(
            lambda: not _rabbitmq_lists(name), "RabbitMQ to stop listing its connection", within=30
        )
    finally:
        delete_names(set(declared.exchanges), set(declared.queues))


def test_a_prefix_in_rabbitmqs_reserved_amq_namespace_is_refused(rabbitmq: str) -> None:
    with pytest.raises(InvalidOption, match=r"'amq\.'.*RabbitMQ reserves"):
        brokerkit.connect(rabbitmq, prefix="amq.bk-test")
