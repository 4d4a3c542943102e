"""The library's log lines a ``brokerkit`` command prints on stderr (its ``brokerkit``
loggers' handler) mask the secrets of the command's URL, as its other stderr lines
do: the handler wrote to ``sys.stderr`` itself, unmasked, so a driver's error quoted
in a WARNING showed what the error lines hid. Run in a process of its own, whose
logging nobody configured (pytest's own handlers would make the command leave it
alone)."""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import logging
from brokerkit.cli._app import _library_logging
from brokerkit.cli._output import hide_secrets_of

with _library_logging(["worker"], debug=False):
    forget = hide_secrets_of(["redis+stream://:Tr0ubad0r@127.0.0.1:6390/0"])
    logging.getLogger("brokerkit.redis").warning("AUTH refused for 'Tr0ubad0r'")
    forget()
"""


def test_a_library_log_line_masks_the_commands_secrets() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert "AUTH refused for" in done.stderr, done.stderr
    assert "Tr0ubad0r" not in done.stderr, done.stderr
