"""``brokerkit exporter --address ::1`` says where it serves as a URL one can open:
``http://[::1]:PORT/metrics``. Before, it printed ``http://::1:PORT/metrics``, which
curl, a browser or a Prometheus scrape config read as host ``:`` (or refuse)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
import uuid

import pytest

pytest.importorskip("typer")
pytest.importorskip("prometheus_client")


def _free_port(family: socket.AddressFamily, host: str) -> int:
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def test_an_ipv6_address_is_shown_in_brackets() -> None:
    try:
        port = _free_port(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brokerkit.cli",
            "exporter",
            f"memory://review30-{uuid.uuid4().hex}",
            "--address",
            "::1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300"},
    )
    try:
        assert child.stderr is not None
        line = child.stderr.readline()  # printed once it listens
        assert f"on http://[::1]:{port}/metrics" in line, line
        url = line.rsplit(" on ", 1)[1].strip()
        with urllib.request.urlopen(url, timeout=10) as answer:  # the URL shown works
            assert b"brokerkit_topics_listed" in answer.read()
    finally:
        child.terminate()
        child.communicate(timeout=30)
