"""A NATS connection that cannot be made says why, as a Redis one does, and says it once.

It used to raise ``could not connect to NATS at HOST:PORT: NoServersError`` (nats-py's
give-up, which names no cause) after logging the cause's type name at every try, four
a second (21 lines for the default connect_timeout). Now the error names the cause
nats-py's error callback saw (connection refused, no greeting, TLS) and what to check,
in the Redis backends' words, and each distinct failure is logged once until a
connection is made; a connection lost later is still logged (lost, the failed tries
once, back). Never with the URL's password.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import brokerkit
from brokerkit.exceptions import ConnectionFailed
from tests.nats_server import NatsServer, find_nats_server
from tests.redis_server import stop_process
from tests.redis_tls import make_certificates

SECRET = "s3cret-r36-nats"
#: What a Redis URL's "nothing answered" says to check (brokerkit._error_text).
CHECK_THE_SERVER = "check the host, the port and that the server runs"
#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once closed


def _tries_logged(caplog: pytest.LogCaptureFixture, where: str) -> list[str]:
    """What was logged of the failed tries to connect to ``where`` (not its loss or
    return), in whatever words."""
    said = [r.getMessage() for r in caplog.records if r.name == "brokerkit.nats"]
    return [m for m in said if where in m and "lost; reconnecting" not in m and "is back" not in m]


def _refusal(url: str, **options: float) -> str:
    broker = brokerkit.connect(url, **options)
    try:
        with pytest.raises(ConnectionFailed) as failed:
            broker.publish("t", "x")
    finally:
        broker.close()
    return str(failed.value)


def test_a_refused_connection_says_so_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    where = f"127.0.0.1:{port}"
    with caplog.at_level(logging.DEBUG):
        message = _refusal(f"nats://ann:{SECRET}@{where}", connect_timeout=1)
    assert message == (
        f"could not connect to NATS at {where}: nothing answered (ConnectionRefusedError: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})); {CHECK_THE_SERVER}"
    )
    # nats-py tried 5 times (connect_timeout 1 s, a try every 0.25 s): logged once.
    assert _tries_logged(caplog, where) == [
        f"a try to connect to NATS at {where} failed: ConnectionRefusedError: [Errno 111] "
        f"Connect call failed ('127.0.0.1', {port}) (logged once, however many tries "
        "fail so, until a connection is made or tried anew)"
    ]
    assert SECRET not in caplog.text


def test_a_broker_that_never_connected_logs_each_use_that_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each publish of a broker whose server is down tries a first connection anew:
    # each is logged (once however many tries it makes), not only the broker's first.
    port = _free_port()
    where = f"127.0.0.1:{port}"
    broker = brokerkit.connect(f"nats://{where}", connect_timeout=1)
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(2):
                with pytest.raises(ConnectionFailed):
                    broker.publish("t", "x")
    finally:
        broker.close()
    assert len(_tries_logged(caplog, where)) == 2


def test_a_port_that_never_greets_names_the_wait(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as silent:  # takes connections (the kernel's backlog), says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        with caplog.at_level(logging.DEBUG):
            message = _refusal(f"nats://{SECRET}@{where}", connect_timeout=1)
    assert message.startswith(
        f"could not connect to NATS at {where}: nothing answered (no NATS greeting within "
        f"1 s: TimeoutError); {CHECK_THE_SERVER}: the port must be a NATS server's client "
        "port (4222 by default)"
    )
    assert len(_tries_logged(caplog, where)) == 1
    assert SECRET not in caplog.text


@contextlib.contextmanager
def _nats_server(*args: str) -> Iterator[int]:
    """A nats-server of this test's own (no JetStream) started with ``args``; its port
    once it takes TCP connections."""
    with tempfile.TemporaryDirectory(prefix="brokerkit-nats-r36-") as home:
        binary = find_nats_server()
        process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", home,
             "-l", f"{home}/nats.log", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            ports = Path(home) / f"{Path(binary).name}_{process.pid}.ports"
            deadline = time.monotonic() + GUARD
            while True:
                assert process.poll() is None, "nats-server exited at start"
                port = 0
                with contextlib.suppress(ValueError, KeyError, IndexError, OSError):
                    port = urlsplit(json.loads(ports.read_text())["nats"][0]).port or 0
                if port:
                    with (
                        contextlib.suppress(OSError),
                        socket.create_connection(("127.0.0.1", port), 1),
                    ):
                        break
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.02)  # polling its start, not pacing the test
            yield port
        finally:
            stop_process(process)


def test_a_tls_server_whose_certificate_is_not_trusted_names_the_handshake(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = make_certificates(tmp_path)
    with _nats_server(
        "--tls", "--tlscert", str(files.server_cert), "--tlskey", str(files.server_key)
    ) as port:
        where = f"127.0.0.1:{port}"
        with caplog.at_level(logging.DEBUG):
            message = _refusal(f"nats://ann:{SECRET}@{where}", connect_timeout=2)
    assert message.startswith(
        f"could not connect to NATS at {where}: the TLS handshake failed "
        "(SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    assert "the server's certificate must be one they trust" in message
    assert len(_tries_logged(caplog, where)) == 1
    assert SECRET not in caplog.text


def test_a_connection_lost_later_is_logged_and_its_tries_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = NatsServer().start()
    try:
        where = f"127.0.0.1:{server.port}"
        url = f"nats://ann:{SECRET}@{where}"
        prefix = f"r36c{uuid.uuid4().hex[:10]}"
        with (
            caplog.at_level(logging.DEBUG),
            brokerkit.connect(url, prefix=prefix, reconnect_timeout=3) as broker,
        ):
            broker.publish("t", "while up")
            for outage in (1, 2):
                server.kill()
                # Waits out reconnect_timeout (3 s) while nats-py tries every 0.25 s.
                with pytest.raises(ConnectionFailed):
                    broker.publish("t", "while down")
                lost = [r for r in caplog.records if "lost; reconnecting" in r.getMessage()]
                assert len(lost) == outage
                # The loss's own cause (nats-py's UnexpectedEOF) is logged too, once.
                tries = [t for t in _tries_logged(caplog, where) if "ConnectionRefused" in t]
                assert len(tries) == outage, tries
                server.start()
                broker.publish("t", "back")  # waits for the reconnection
            assert [r for r in caplog.records if "is back" in r.getMessage()]
    finally:
        server.stop()
    assert SECRET not in caplog.text
