"""The CLI masks the secret of a URL argument whose ``://`` is mistyped
(``redis+stream:/:pw@host``, ``redis+stream//:pw@host``, ``nats:/host?nkey_seed=...``),
as the URL's own error masks it: the masking took only an argument holding ``://``
(cd1196e: one starting ``scheme://``), so a usage error quoting such an argument
(``Got unexpected extra argument(s) (...)``) showed the secret whole."""

from __future__ import annotations

import subprocess
import sys

import pytest

from brokerkit.cli._output import redact

pytest.importorskip("typer")

_COMMAND = "import sys; from brokerkit.cli._app import run; sys.exit(run(sys.argv[1:]))"

_MISTYPED = [
    ("redis+stream:/:S3cr3tPw@localhost/0", "S3cr3tPw"),
    ("redis+stream//:S3cr3tPw@localhost/0", "S3cr3tPw"),
    ("redis+stream:app:S3cr3tPw@localhost/0", "S3cr3tPw"),
    ("nats:/127.0.0.1:4222?nkey_seed=SUAMSEEDVALUE", "SUAMSEEDVALUE"),
    ("nats:127.0.0.1:4222?token=SUAMSEEDVALUE&prefix=x", "SUAMSEEDVALUE"),
]


def brokerkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``brokerkit`` command in a process of its own, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-c", _COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("url", "secret"), _MISTYPED)
def test_a_usage_error_quoting_a_url_with_a_mistyped_scheme_masks_it(url: str, secret: str) -> None:
    # backends takes no URL: click quotes the extra argument in its usage error
    done = brokerkit_cli("backends", url)
    assert done.returncode == 2, done.stderr
    assert "unexpected extra argument" in done.stderr, done.stderr
    assert secret not in done.stdout + done.stderr, done.stderr
    assert "***" in done.stderr, done.stderr


@pytest.mark.parametrize(("url", "secret"), _MISTYPED)
def test_a_secret_of_a_url_with_a_mistyped_scheme_is_masked_alone_too(
    url: str, secret: str
) -> None:
    for argument in (url, f"--url={url}"):
        masked = redact(f"the server refused {secret} (from {url})", [argument])
        assert secret not in masked, (argument, masked)


@pytest.mark.parametrize(
    "argument",
    [
        "user@example.com",  # no scheme
        "a body with user:pw@host in it",  # whitespace: text, not a URL
        "note:nothing-hidden-here",  # masks nothing
    ],
)
def test_an_argument_that_is_no_url_masks_nothing(argument: str) -> None:
    said = "user pw host nothing 1 0"
    assert redact(said, [argument]) == said
