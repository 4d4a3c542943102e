"""``brokerkit exporter --address ::1 --port P`` with P already taken names the address
as a URL does, ``[::1]:P``, as b2097d9 made its serving line: before, it said
``cannot listen on ::1:P``, where the port cannot be told from the address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("typer")
pytest.importorskip("prometheus_client")


def _exporter(address: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "brokerkit.cli",
            "exporter",
            f"memory://review30b-{uuid.uuid4().hex}",
            "--address",
            address,
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        timeout=60,  # a guard: it fails at once, the port being taken
    )


@pytest.mark.parametrize(
    ("family", "address", "shown"),
    [
        (socket.AF_INET6, "::1", "[::1]"),
        (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
    ],
    ids=["ipv6", "ipv4"],
)
def test_a_busy_port_is_named_with_its_address_as_in_a_url(
    family: socket.AddressFamily, address: str, shown: str
) -> None:
    with socket.socket(family) as busy:
        try:
            busy.bind((address, 0))
        except OSError:
            pytest.skip(f"no {address} loopback here")
        busy.listen()
        port = int(busy.getsockname()[1])
        done = _exporter(address, port)
    assert done.returncode == 2, done.stderr
    text = " ".join(done.stderr.split())  # (the error box may wrap)
    assert f"cannot listen on {shown}:{port}:" in text, done.stderr
