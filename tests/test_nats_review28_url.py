"""NATS: what a ``nats://`` (and ``nats+core://``) URL names, and what it is refused
for (review 28).

* An IPv6 host (``nats://[::1]:4222``) was handed to nats-py without its brackets
  (``nats://::1:4222``), which it cannot parse: the broker never connected, and said
  only ``could not connect to NATS at ::1:4222: Error``.
* Several hosts (``nats://h1:4222,h2:4222``) were taken, and all but the first
  ignored without a word: a broker meant to ride out the loss of a server was tied
  to one. They are refused, as one host is what the backend reads.
* A path (``nats://host:4222/shop``, the prefix written where a Redis URL has its
  database) was ignored: the broker used the stream ``brokerkit``. It is refused,
  naming ``prefix``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import brokerkit
from brokerkit.exceptions import InvalidURL
from tests.nats_server import find_nats_server
from tests.redis_server import stop_process

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def ipv6_nats() -> Iterator[int]:
    """A private nats-server with JetStream on [::1]; its port."""
    if not _ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    binary = find_nats_server()
    with tempfile.TemporaryDirectory(prefix="brokerkit-nats6-") as home:
        process = subprocess.Popen(
            [binary, "-a", "::1", "-p", "-1", "--ports_file_dir", home, "-js",
             "-sd", str(Path(home) / "store")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            ports = Path(home) / f"{Path(binary).name}_{process.pid}.ports"
            deadline = time.monotonic() + GUARD
            port = 0
            while not port:
                assert process.poll() is None, "nats-server on [::1] exited at start"
                assert time.monotonic() < deadline, "nats-server on [::1] did not start"
                with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                    port = urlsplit(json.loads(ports.read_text())["nats"][0]).port or 0
                time.sleep(0.02)  # polling with a deadline, not synchronisation
            yield port
        finally:
            stop_process(process)


def test_an_ipv6_host_is_reached(ipv6_nats: int) -> None:
    url = f"nats://[::1]:{ipv6_nats}"
    with brokerkit.connect(url, prefix="v6", connect_timeout=GUARD) as broker:
        subscription = broker.subscribe("jobs")
        broker.publish("jobs", "over IPv6")
        delivery = subscription.receive(timeout=GUARD)
        assert delivery is not None and delivery.body == "over IPv6"
        delivery.ack()


@pytest.mark.parametrize("scheme", ["nats", "nats+core"])
@pytest.mark.parametrize("credentials", ["user:s3cret@", "s3cret@"])  # (s3cret@: a token)
def test_several_hosts_are_refused(scheme: str, credentials: str) -> None:
    with pytest.raises(InvalidURL, match="one host") as refused:
        brokerkit.connect(f"{scheme}://{credentials}127.0.0.1:4222,127.0.0.1:4223")
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("scheme", ["nats", "nats+core"])
@pytest.mark.parametrize("path", ["/shop", "/shop/", "//x"])
def test_a_path_is_refused_naming_prefix(scheme: str, path: str) -> None:
    with pytest.raises(InvalidURL, match="prefix") as refused:
        brokerkit.connect(f"{scheme}://user:s3cret@127.0.0.1:4222{path}")
    assert "s3cret" not in str(refused.value)


def test_a_path_holding_a_secret_is_not_quoted() -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect("nats://127.0.0.1:4222/token=s3cret")
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("scheme", ["nats", "nats+core"])
def test_an_empty_path_is_taken(scheme: str) -> None:
    brokerkit.connect(f"{scheme}://127.0.0.1:4222/").close()  # (connects on first use)
