"""NATS: token auth (review 5, finding 4).

``nats://TOKEN@host`` is the NATS form of a URL with a token: it connects (it used
to be sent as a user name without a password, which the server refused), and the
token is never in a log line or an error. Each test starts a nats-server of its own
(the suite's binary) with the authorization it needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import brokerkit
from brokerkit.exceptions import ConnectionFailed
from tests.nats_server import _jetstream_version, find_nats_server
from tests.redis_server import stop_process

_TOKEN = "T0k3n-of-review5"


@contextlib.contextmanager
def _server(*args: str, probe: Callable[[int], str]) -> Iterator[int]:
    """A nats-server of this test's own, JetStream on, started with ``args``; its port
    once ``probe(port)`` (a URL with credentials it takes) finds JetStream answering."""
    with tempfile.TemporaryDirectory(prefix="brokerkit-nats-review5-") as home:
        binary = find_nats_server()
        process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", home, "-js",
             "-sd", f"{home}/store", "-l", f"{home}/nats.log", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            ports = Path(home) / f"{Path(binary).name}_{process.pid}.ports"
            deadline = time.monotonic() + 10
            port = 0
            while True:
                assert process.poll() is None, "nats-server exited at start"
                if not port and ports.exists():
                    with contextlib.suppress(ValueError, KeyError, IndexError):
                        port = urlsplit(json.loads(ports.read_text())["nats"][0]).port or 0
                if port and _jetstream_version(probe(port)) is not None:
                    break
                assert time.monotonic() < deadline, "nats-server did not answer"
                time.sleep(0.02)
            yield port
        finally:
            stop_process(process)


def test_a_token_in_the_url_connects_and_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    with _server("--auth", _TOKEN, probe=lambda port: f"nats://{_TOKEN}@127.0.0.1:{port}") as port:
        shown: list[str] = []
        with caplog.at_level(logging.DEBUG):
            for url in (f"nats://{_TOKEN}@127.0.0.1:{port}", f"nats://:{_TOKEN}@127.0.0.1:{port}"):
                with brokerkit.connect(url, prefix="tokens", reconnect_timeout=3) as broker:
                    subscription = broker.subscribe("t", group="g")
                    broker.publish("t", "through a token")
                    delivery = subscription.receive(timeout=5)
                    assert delivery is not None and delivery.body == "through a token"
                    delivery.ack()
            wrong = f"nats://wrong{_TOKEN}@127.0.0.1:{port}"
            with brokerkit.connect(wrong, prefix="tokens", connect_timeout=1) as broker:
                with pytest.raises(ConnectionFailed, match="refused the URL's credentials") as err:
                    broker.publish("t", "x")
                shown += [str(err.value), "".join(traceback.format_exception(err.value))]
        shown.append(caplog.text)
        assert not [text for text in shown if _TOKEN in text], "the token was shown"
