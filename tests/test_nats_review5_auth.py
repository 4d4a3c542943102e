"""NATS: token auth, and the server's permissions (review 5, findings 4 and 5).

``nats://TOKEN@host`` is the NATS form of a URL with a token: it connects (it used
to be sent as a user name without a password, which the server refused), and the
token is never in a log line or an error. A command the server's permissions refuse
raises PermissionDenied at once, naming the subject and the operation (it used to
wait out ``reconnect_timeout`` and raise ConnectionFailed). Each test starts a
nats-server of its own (the suite's binary) with the authorization it needs.
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
from brokerkit.exceptions import ConnectionFailed, PermissionDenied
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


_PERMISSIONS = """
authorization {
  users = [
    { user: admin, password: adminpw }
    { user: reader, password: readerpw,
      permissions: { publish: { allow: ["$JS.API.>", "_INBOX.>"] },
                     subscribe: { allow: ["_INBOX.>"] } } }
    { user: noack, password: noackpw,
      permissions: { publish: { deny: ["$JS.ACK.>"] } } }
    { user: nopull, password: nopullpw,
      permissions: { publish: { deny: ["$JS.API.CONSUMER.MSG.NEXT.>"] } } }
  ]
}
"""


@pytest.fixture(scope="module")
def guarded() -> Iterator[Callable[[str], str]]:
    """``url(user)``: the URL of a nats-server whose users have the permissions above."""
    with tempfile.TemporaryDirectory(prefix="brokerkit-nats-review5-conf-") as home:
        config = Path(home) / "nats.conf"
        config.write_text(_PERMISSIONS)
        with _server(
            "-c", str(config), probe=lambda port: f"nats://admin:adminpw@127.0.0.1:{port}"
        ) as port:
            yield lambda user: f"nats://{user}:{user}pw@127.0.0.1:{port}"


def test_a_refused_publish_raises_permission_denied_at_once(
    guarded: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    with brokerkit.connect(guarded("reader"), prefix="perms", reconnect_timeout=10) as broker:
        started = time.monotonic()
        with pytest.raises(PermissionDenied) as err:
            broker.publish("orders", "x")
        took = time.monotonic() - started
    assert took < 3, f"the refusal took {took:.1f} s (reconnect_timeout=10)"
    assert "publish to 'perms.orders'" in str(err.value)
    assert err.value.command == "publish"
    assert "readerpw" not in str(err.value) and "readerpw" not in caplog.text


def test_a_refused_ack_raises_permission_denied_at_once(guarded: Callable[[str], str]) -> None:
    with (
        brokerkit.connect(guarded("admin"), prefix="perms-ack") as admin,
        brokerkit.connect(guarded("noack"), prefix="perms-ack", reconnect_timeout=10) as broker,
    ):
        admin.publish("orders", "x")
        delivery = broker.subscribe("orders", group="g").receive(timeout=5)
        assert delivery is not None
        started = time.monotonic()
        with pytest.raises(PermissionDenied, match=r"publish to '\$JS\.ACK\.") as err:
            delivery.ack()
        assert time.monotonic() - started < 3
        assert err.value.command == "publish"


def test_a_refused_pull_raises_permission_denied(guarded: Callable[[str], str]) -> None:
    with brokerkit.connect(guarded("nopull"), prefix="perms-pull", reconnect_timeout=10) as broker:
        broker.publish("orders", "x")
        subscription = broker.subscribe("orders", group="g")
        started = time.monotonic()
        with pytest.raises(PermissionDenied, match=r"\$JS\.API\.CONSUMER\.MSG\.NEXT\.") as err:
            subscription.receive(timeout=5)
        assert time.monotonic() - started < 3
        assert err.value.command == "publish"
