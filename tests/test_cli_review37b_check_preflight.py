"""``brokerkit check``'s pre-flight (its connection and inspect before any test) stops
the run only on a broker it cannot use at all (review 37, second round).

A plugin's ``inspect`` that raised anything but a ``BrokerError`` (a
``NotImplementedError``) crashed ``check`` before the suite ran, where the suite
used to report it as one failed test; now the suite runs. And the pre-flight ran
before the command took its signals: a SIGTERM there killed the process (no close,
status -15) where one during the suite ends it with status 143. A Ctrl-C there ends it
as anywhere: "interrupted", status 130.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("typer")
pytest.importorskip("brokerkit.contracts")

from brokerkit.backends.memory.broker import MemoryBroker
from brokerkit.cli._app import run

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 60.0


def test_an_inspect_that_raises_no_broker_error_leaves_the_suite_to_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_inspect(self: MemoryBroker, topic: str) -> None:
        raise NotImplementedError("this plugin has no inspect")

    monkeypatch.setattr(MemoryBroker, "_inspect", no_inspect)  # (this process's only)
    status = run(["check", "memory://", "-k", "test_no_loss"])
    out, err = capsys.readouterr()
    assert status == 0, (out, err)
    assert "passed" in out and "ran no test" not in err, (out, err)


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """A port that takes connections and never answers: the pre-flight waits there."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        yield listener
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_signal_during_the_preflight_ends_check_as_during_the_suite(
    silent: socket.socket, tmp_path: Path, signum: int, status: int
) -> None:
    url = f"redis+stream://127.0.0.1:{silent.getsockname()[1]}/0"
    command = [sys.executable, "-c", "import sys; from brokerkit.cli._app import run; "
               "sys.exit(run(sys.argv[1:]))", "check", url]  # fmt: skip
    child = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        silent.settimeout(GUARD)
        connection, _ = silent.accept()
        with connection:
            connection.settimeout(GUARD)
            assert connection.recv(64)  # the pre-flight's handshake: it waits for a reply
            child.send_signal(signum)
            out, err = child.communicate(timeout=GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == status, (out, err)
    if signum == signal.SIGINT:
        assert b"interrupted" in err, err
    assert b"passed" not in out and b"Traceback" not in err, (out, err)
