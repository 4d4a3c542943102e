"""On a terminal (or with ``FORCE_COLOR``) what the command writes on stderr masks the
secrets of its URL as it does elsewhere: rich highlighted every line of ``err``,
putting colour codes inside the numbers, addresses and ``://`` of a URL or a password
(``hunter-42``), after which the masking of what was written found neither. Run in a
process of its own, whose terminal settings nobody else has read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
from rich.markup import escape
from brokerkit.cli._output import err, hide_secrets_of

url = "redis+stream://:hunter-42@10.0.0.5:6379/0"
forget = hide_secrets_of(["check", url])
reason = f"ConnectionError: cannot use {url}: AUTH hunter-42 refused"
err.print(f"[bold red]FAIL[/]  publish/consume  {escape(reason)}", soft_wrap=True)
# a secret split by the caller's own markup: the line loses its colours, not the mask
err.print("[bold]hunter[/]-42 and [red]10.0.0.5[/]")
forget()
"""


def _stderr() -> str:
    env = {**os.environ, "FORCE_COLOR": "1", "PYTHONPATH": str(_ROOT)}
    env.pop("NO_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr


def test_a_coloured_note_masks_the_password_and_the_url() -> None:
    stderr = _stderr()
    assert "\x1b[" in stderr, stderr  # in colour
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stderr)
    assert "hunter" not in plain, plain
    assert "cannot use redis+stream://:***@10.0.0.5:6379/0: AUTH *** refused" in plain, plain
    assert "*** and 10.0.0.5" in plain, plain
