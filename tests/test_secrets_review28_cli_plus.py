"""The CLI masks a secret written with a raw ``+`` (or anything else that makes the
URL refused) in every form: a URL that does not parse (a raw ``+`` in a password or
a secret query value, which the URL parser refuses) was not masked at all, so a
usage error that quotes the argument (``Got unexpected extra argument(s) (...)``)
showed the secret whole; and the form of a secret decoded with ``+`` as a space
(``ab+cd`` read as ``ab cd``, as a query parser reads it) was not among the forms
masked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from brokerkit.cli._output import redact

pytest.importorskip("typer")

_COMMAND = "import sys; from brokerkit.cli._app import run; sys.exit(run(sys.argv[1:]))"
_SECRET = "S3cretX9"


def brokerkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``brokerkit`` command in a process of its own, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-c", _COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


_UNPARSED = [
    f"redis+stream://:pw+{_SECRET}@127.0.0.1:1/0",
    f"redis+stream://app:pw+{_SECRET}@127.0.0.1:1/0",
    f"redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password=ab+{_SECRET}",
    f"redis+stream://127.0.0.1:1/0?sentinel_password=ab+{_SECRET}&db=1",
    f"nats://127.0.0.1:1?token=ab+{_SECRET}",
    f"nats://ab+{_SECRET}@127.0.0.1:1",
    f"kombu+amqp://guest:pw+{_SECRET}@127.0.0.1:1//",
]


@pytest.mark.parametrize("url", _UNPARSED)
def test_a_usage_error_quoting_a_url_refused_for_a_raw_plus_masks_it(url: str) -> None:
    # backends takes no URL: click quotes the extra argument in its usage error
    done = brokerkit_cli("backends", url)
    assert done.returncode == 2, done.stderr
    assert "unexpected extra argument" in done.stderr, done.stderr
    assert _SECRET not in done.stdout + done.stderr, done.stderr
    assert "***" in done.stderr, done.stderr


@pytest.mark.parametrize("url", _UNPARSED)
def test_every_form_of_a_refused_urls_secret_is_masked(url: str) -> None:
    written = url.split(_SECRET)[0].rsplit("=", 1)[-1].rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    value = written + _SECRET  # "pw+S3cretX9", "ab+S3cretX9"
    forms = [value, value.replace("+", "%2B"), value.replace("+", " ")]
    for form in forms:
        masked = redact(f"the server said: {form} is wrong", [url])
        assert _SECRET not in masked, (form, masked)


@pytest.mark.parametrize(
    "url",
    [
        f"kombu+amqp://guest:guest@127.0.0.1:1/token=ab+{_SECRET}",
        f"memory://shop/token=ab+{_SECRET}",
    ],
)
def test_a_path_secret_with_a_raw_plus_is_masked_decoded_with_a_space(url: str) -> None:
    for form in (f"ab+{_SECRET}", f"ab%2B{_SECRET}", f"ab {_SECRET}"):
        masked = redact(f"vhost {form} not found", [url])
        assert _SECRET not in masked, (form, masked)


def test_a_refused_url_given_as_brokerkit_url_is_masked_too() -> None:
    url = f"redis+stream://127.0.0.1:1/0?sentinel_password=ab+{_SECRET}"
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND, "backends", "extra", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "BROKERKIT_URL": url},
    )
    assert done.returncode == 2, done.stderr
    assert _SECRET not in done.stdout + done.stderr, done.stderr


def test_an_argument_that_only_holds_a_scheme_is_not_taken_for_a_url() -> None:
    # a message body, say: it does not start as a URL, and masks nothing
    said = "a body about a cat"
    assert redact(said, ["see x://a@b:1/ here", "note: y://:a+b@c"]) == said
