"""When ``brokerkit bench`` (or ``check``, ``demo``) cannot delete the keys under its
scratch prefix, the command it prints to remove them names the Redis server of the URL
(host, port, database, TLS, ACL user), never its password (it says to set
REDISCLI_AUTH: ``--askpass`` would read xargs's stdin). Before, the hint was a bare
``redis-cli --scan --pattern 'brokerkit-bench-...*' | xargs redis-cli unlink``: run as
printed, it scanned localhost:6379, database 0, whatever server the keys were left on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("typer")

_ROOT = Path(__file__).resolve().parents[1]
_CMD = "import sys; from brokerkit.cli._app import run; sys.exit(run(sys.argv[1:]))"


def _bench(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BROKERKIT_URL", "BROKERKIT_DEBUG")}
    env["PYTHONPATH"] = str(_ROOT)
    return subprocess.run(
        [sys.executable, "-c", _CMD, "bench", url, "--count", "1", "--step", "publish"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _hint(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "remove them" in line]
    assert len(lines) == 1, stderr
    return lines[0].split("remove them", 1)[1].strip()


def test_the_hint_names_the_server_of_the_url() -> None:
    # port 1: nothing listens there, so nothing can be deleted
    done = _bench("redis+stream://127.0.0.1:1/3?reconnect_timeout=0.2")
    assert done.returncode == 1, done.stderr
    hint = _hint(done.stderr)
    assert hint.startswith(
        "with: redis-cli -h 127.0.0.1 -p 1 -n 3 --scan --pattern 'brokerkit-bench-"
    )
    assert hint.endswith("| xargs redis-cli -h 127.0.0.1 -p 1 -n 3 unlink"), hint


def test_the_hint_says_where_the_password_goes_and_never_shows_it() -> None:
    done = _bench("redis+list://alice:s3cret-pw@127.0.0.1:1?db=2&reconnect_timeout=0.2")
    assert done.returncode == 1, done.stderr
    hint = _hint(done.stderr)
    assert hint.startswith(", REDISCLI_AUTH set to the password, with: redis-cli"), hint
    assert "redis-cli -h 127.0.0.1 -p 1 -n 2 --user alice --scan" in hint, hint
    assert "xargs redis-cli -h 127.0.0.1 -p 1 -n 2 --user alice unlink" in hint, hint
    assert "s3cret" not in done.stderr + done.stdout


def test_a_password_without_a_user_is_never_shown_either() -> None:
    done = _bench("rediss+stream://:s3cret-pw@127.0.0.1:1/0?reconnect_timeout=0.2")
    assert done.returncode == 1, done.stderr
    hint = _hint(done.stderr)
    assert "REDISCLI_AUTH" in hint, hint
    assert "redis-cli -h 127.0.0.1 -p 1 -n 0 --tls --scan" in hint, hint
    assert "s3cret" not in done.stderr + done.stdout


def test_a_user_name_that_reads_as_markup_is_printed_as_it_is() -> None:
    # rich's console markup ate "[bold]" from the printed command: --user 'ops', the
    # wrong user (found by review)
    done = _bench("redis+stream://%5Bbold%5Dops:pw@127.0.0.1:1/0?reconnect_timeout=0.2")
    assert done.returncode == 1, done.stderr
    hint = _hint(done.stderr)
    assert "--user '[bold]ops' --scan" in hint, hint
    assert "pw@" not in done.stderr
