"""NATS: the renewals' AckWait check asks every group held, whatever another group
answers (review 27, item 2).

Each round of the renewals asks the AckWait of every group whose deliveries the broker
holds. It asked them one after the other, in the order their leases came, and a
group that could not say (the server's permissions refuse its consumer info, or it
did not answer in the check's time) ended the check for every group after it: one
group's trouble kept the others on an AckWait they no longer had, round after round.
The groups are now asked all at once, each on its own.

The server here is one of the test's own: its permissions are changed while the
broker runs (a configuration reload), as an operator may.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats as nats_py
import pytest

import brokerkit
from brokerkit.backends.nats._wire import consumer_name
from tests.nats_server import _jetstream_version, find_nats_server
from tests.redis_server import stop_process
from tests.waiting import wait_until

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0
#: The groups' AckWait (renewed, and asked, every second)...
_FIRST = 4.0
#: ... and the one the second group is edited to.
_EDITED = 3.0
_STREAM = "review27checks"

_CONFIG = """
authorization {
  users = [
    { user: admin, password: adminpw }
    { user: app, password: apppw, permissions: { publish: { allow: [">"] %s } } }
  ]
}
"""


class _Server:
    """A nats-server of this test's own, with users whose permissions can change."""

    def __init__(self, home: str) -> None:
        self.config = Path(home) / "nats.conf"
        self.config.write_text(_CONFIG % "")
        binary = find_nats_server()
        self.process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", home, "-js",
             "-sd", f"{home}/store", "-l", f"{home}/nats.log", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ports = Path(home) / f"{Path(binary).name}_{self.process.pid}.ports"
        deadline = time.monotonic() + GUARD
        self.port = 0
        while True:
            assert self.process.poll() is None, "nats-server exited at start"
            if not self.port and ports.exists():
                with contextlib.suppress(ValueError, KeyError, IndexError):
                    self.port = urlsplit(json.loads(ports.read_text())["nats"][0]).port or 0
            if self.port and _jetstream_version(self.url("admin")) is not None:
                break
            assert time.monotonic() < deadline, "nats-server did not answer"
            time.sleep(0.02)  # polling with a deadline, not synchronisation

    def url(self, user: str) -> str:
        return f"nats://{user}:{user}pw@127.0.0.1:{self.port}"

    def deny(self, subject: str) -> None:
        """Deny ``app`` publishing to ``subject`` from now on (a reload: the
        connections open take it too)."""
        self.config.write_text(_CONFIG % f', deny: ["{subject}"]')
        os.kill(self.process.pid, signal.SIGHUP)


@pytest.fixture
def server() -> Iterator[_Server]:
    with tempfile.TemporaryDirectory(prefix="brokerkit-nats-review27-") as home:
        started = _Server(home)
        try:
            yield started
        finally:
            stop_process(started.process)


def _api(url: str, subject: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """One JetStream API call (``{"denied": ...}`` if the permissions refuse it)."""

    async def call() -> dict[str, Any]:
        refused: list[Exception] = []

        async def error_cb(exc: Exception) -> None:
            refused.append(exc)

        nc = await nats_py.connect(url, error_cb=error_cb)
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            try:
                reply = await nc.request(f"$JS.API.{subject}", payload, timeout=2)
            except nats_py.errors.TimeoutError:
                if refused:
                    return {"denied": str(refused[0])}
                raise
            answer: dict[str, Any] = json.loads(reply.data)
            return answer
        finally:
            await nc.close()

    return asyncio.run(call())


def test_a_group_whose_ack_wait_cannot_be_asked_does_not_stop_the_others(
    server: _Server,
) -> None:
    with brokerkit.connect(server.url("app"), prefix=_STREAM, visibility_timeout=_FIRST) as broker:
        refused = broker.subscribe("refused", group="g")
        edited = broker.subscribe("edited", group="g")
        broker.publish("refused", "first held")
        broker.publish("edited", "then this one")
        first = refused.receive(timeout=GUARD)  # (its lease comes first)
        second = edited.receive(timeout=GUARD)
        assert first is not None and second is not None
        refused_info = f"CONSUMER.INFO.{_STREAM}.{consumer_name('refused', 'g')}"
        server.deny(f"$JS.API.{refused_info}")
        wait_until(
            lambda: "denied" in _api(server.url("app"), refused_info, None),
            "the reload to refuse the first group's consumer info",
            within=GUARD,
        )
        durable = consumer_name("edited", "g")
        info = _api(server.url("admin"), f"CONSUMER.INFO.{_STREAM}.{durable}", None)
        config = {**info["config"], "ack_wait": int(_EDITED * 1e9)}
        answer = _api(
            server.url("admin"),
            f"CONSUMER.DURABLE.CREATE.{_STREAM}.{durable}",
            {"stream_name": _STREAM, "config": config},
        )
        assert "error" not in answer
        lease = second.receipt.receipt  # (the asyncio delivery's)
        wait_until(
            lambda: lease.ack_wait == _EDITED,
            "the renewals to see the second group's new AckWait",
            within=GUARD,
        )
        second.ack()
        first.ack()
