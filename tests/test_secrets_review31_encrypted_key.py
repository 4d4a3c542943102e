"""A client key protected by a pass phrase (``ssl_keyfile=``, or the key in
``ssl_certfile=``) is refused at ``connect()``: brokerkit takes no pass phrase, and
OpenSSL, given none, asks for one on the process's terminal at the first TLS
connection ("Enter PEM pass phrase:"), blocking that thread (the event loop, on the
asyncio API) until someone types it, or, without a terminal, fails the connection as
"could not connect". A key file that becomes encrypted later (a rotation) fails its
connection without asking the terminal: checked in a child process on a
pseudo-terminal, where OpenSSL's prompt would show."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import brokerkit
from brokerkit.exceptions import InvalidOption

PASS_PHRASE = "KeyPassPhrase-31"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate, its key in clear, and the key encrypted (PKCS#8
    and the traditional PEM form), each alone and with the certificate."""
    folder = tmp_path_factory.mktemp("keys")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "plain.key", "-out", "cert.pem", "-subj", "/CN=client",
        "-days", "2",
    )  # fmt: skip
    openssl("pkey", "-in", "plain.key", "-aes256", "-passout", f"pass:{PASS_PHRASE}",
            "-out", "pkcs8.key")  # fmt: skip
    openssl("ec", "-in", "plain.key", "-aes256", "-passout", f"pass:{PASS_PHRASE}",
            "-out", "traditional.key")  # fmt: skip
    certificate = (folder / "cert.pem").read_text()
    for name in ("pkcs8", "traditional"):
        key = (folder / f"{name}.key").read_text()
        (folder / f"{name}-with-cert.pem").write_text(certificate + key)
    return folder


@pytest.mark.parametrize("key", ["pkcs8.key", "traditional.key"])
@pytest.mark.parametrize("scheme", ["rediss+stream", "rediss+list", "rediss+pubsub"])
def test_an_encrypted_key_file_is_refused_at_connect(keys: Path, key: str, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:1/0?ssl_certfile={keys / 'cert.pem'}&ssl_keyfile={keys / key}"
    with pytest.raises(InvalidOption) as caught:
        brokerkit.connect(url)
    message = str(caught.value)
    assert "ssl_keyfile" in message
    assert "encrypted" in message


@pytest.mark.parametrize("name", ["pkcs8-with-cert.pem", "traditional-with-cert.pem"])
def test_a_certificate_file_holding_an_encrypted_key_is_refused(keys: Path, name: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        brokerkit.connect(f"rediss+stream://127.0.0.1:1/0?ssl_certfile={keys / name}")
    assert "ssl_certfile" in str(caught.value)
    assert "encrypted" in str(caught.value)


def test_a_key_in_clear_is_taken(keys: Path) -> None:
    url = (
        f"rediss+stream://127.0.0.1:1/0?ssl_certfile={keys / 'cert.pem'}"
        f"&ssl_keyfile={keys / 'plain.key'}"
    )
    brokerkit.connect(url).close()


_CHILD = """
import ssl, sys
from brokerkit.backends.redis import _tls
try:
    _tls._context(
        cert_reqs=ssl.CERT_REQUIRED, check_hostname=True, include_flags=(), exclude_flags=(),
        certfile=(sys.argv[1], 1, 1), keyfile=(sys.argv[2], 1, 1), password=None,
        ca_certs=None, ca_path=None, ca_data=None, min_version=None, ciphers=None,
    )
    print("RESULT loaded", flush=True)
except Exception as exc:
    print("RESULT", type(exc).__name__, flush=True)
"""


def test_a_key_encrypted_after_connect_never_prompts_on_the_terminal(keys: Path) -> None:
    """What builds the TLS context of a connection (the key file changed on disk since
    connect()) never asks the terminal for a pass phrase."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child, on the pseudo-terminal
        os.execv(
            sys.executable,
            [sys.executable, "-c", _CHILD, str(keys / "cert.pem"), str(keys / "pkcs8.key")],
        )
    shown = b""
    deadline = time.monotonic() + 30
    try:
        while b"RESULT" not in shown and b"pass phrase" not in shown:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([terminal], [], [], left)[0]:
                break
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the child ended
                break
            if not chunk:
                break
            shown += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(terminal)
    assert b"pass phrase" not in shown, shown
    assert b"RESULT" in shown and b"RESULT loaded" not in shown, shown
