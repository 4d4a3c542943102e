"""A topic, a group or a header given with bytes that are not valid text (review 31b of
the command line).

Before: ``brokerkit publish memory://x $'t\\xff' hi`` failed with status 1 and
"invalid topic 't\\udcff'" (the lone surrogate Python reads an undecodable byte of
argv as), a ``-H`` header the same with "not valid Unicode: it holds a lone
surrogate", where the same byte in BODY was a usage error (status 2) naming "byte
0xff". Now every such argument is that usage error, naming the argument and the byte,
before anything connects.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("typer")

#: Seconds a child may take: a hang guard, never a pace.
GUARD = 60.0
BAD = b"t\xff"


def _run(*argv: bytes | str) -> tuple[int, str]:
    """``brokerkit ARGV`` as a shell runs it, bytes and all: status, stderr."""
    args = [a if isinstance(a, bytes) else a.encode() for a in argv]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}
    env.pop("BROKERKIT_URL", None)
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"brokerkit.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=GUARD,
        env=env,
    )
    return done.returncode, done.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["publish", "memory://x", BAD, "hi"], "TOPIC"),
        (["consume", "memory://x", BAD, "-n", "1", "-t", "0"], "TOPIC"),
        (["consume", "memory://x", BAD, "--pattern", "-n", "1", "-t", "0"], "TOPIC"),
        (["consume", "memory://x", "t", "-g", b"g\xff", "-n", "1", "-t", "0"], "--group"),
        (["inspect", "memory://x", BAD], "TOPIC"),
        (["rescue", "memory://x", BAD], "TOPIC"),
        (["dlq", "memory://x", BAD], "TOPIC"),
        (["topics", "memory://x", "-t", BAD], "--topic"),
        (["top", "memory://x", "-t", BAD, "--iterations", "1"], "--topic"),
        (["exporter", "memory://x", "-t", BAD, "--port", "0"], "--topic"),
        (["publish", "memory://x", "t", "hi", "-H", b"k=v\xff"], "--header"),
        (["publish", "memory://x", "t", "hi", "-H", b"k\xff=v"], "--header"),
    ],
    ids=[
        "publish",
        "consume",
        "consume-pattern",
        "consume-group",
        "inspect",
        "rescue",
        "dlq",
        "topics",
        "top",
        "exporter",
        "header-value",
        "header-name",
    ],
)
def test_an_undecodable_byte_is_a_usage_error_naming_the_argument(
    argv: list[bytes | str], named: str
) -> None:
    status, stderr = _run(*argv)
    assert status == 2, f"status {status}, stderr {stderr!r}"
    assert f"Invalid value for {named}" in stderr, stderr
    assert "byte 0xff" in stderr, stderr
    assert "\\udcff" not in stderr and "surrogate" not in stderr, stderr
    assert "Traceback" not in stderr, stderr


def test_the_body_is_still_refused_as_before() -> None:
    status, stderr = _run("publish", "memory://x", "t", b"h\xff")
    assert status == 2, stderr
    assert "Invalid value for BODY" in stderr and "byte 0xff" in stderr, stderr


def test_valid_text_of_any_script_is_taken() -> None:
    # non-ASCII text that decodes is no usage error: it reaches the topic's own check
    status, stderr = _run("publish", "memory://x", "t", "hi", "-H", "k=caf\u00e9")
    assert status == 0, stderr
    status, stderr = _run("inspect", "memory://x", "caf\u00e9")
    assert status == 1 and "invalid topic" in stderr, stderr
