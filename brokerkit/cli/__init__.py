"""The ``brokerkit`` command: publish, consume, inspect, rescue, check, demo, bench.

It needs the ``cli`` extra (typer and rich): ``pip install "pybrokerkit[cli]"``.
Data goes to stdout, progress and errors to stderr; an error is one line and a
non-zero exit status, never a traceback (``BROKERKIT_DEBUG=1`` shows one).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_CLI_PACKAGES = ("typer", "rich", "click")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``brokerkit`` command with ``argv`` (default: ``sys.argv[1:]``); exit."""
    try:
        from brokerkit.cli._app import run
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _CLI_PACKAGES:
            raise
        sys.stderr.write(
            f"brokerkit: error: the brokerkit command needs {missing!r}, which is not "
            'installed; install the command-line extra: pip install "pybrokerkit[cli]"\n'
        )
        raise SystemExit(2) from None
    raise SystemExit(run(list(sys.argv[1:] if argv is None else argv)))
