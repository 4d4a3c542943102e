"""Every command masks the secrets of its URL on stderr while it runs, ``worker``
included: it was added without the URL-first command class, the only place that
registered a URL for masking, so its log lines and notes showed the secrets of the URL
it was given (as an argument or in ``BROKERKIT_URL``) and of its module's own broker.
Now the ``brokerkit`` group registers every command's arguments and ``BROKERKIT_URL``.
The worker runs in a process of its own, whose logging nobody configured."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import typer

from brokerkit.cli import _output
from brokerkit.cli._app import build_app

_ROOT = Path(__file__).resolve().parents[1]
_CMD = "import sys; from brokerkit.cli._app import run; sys.exit(run(sys.argv[1:]))"

_MODULE = """
import logging
import sys

import brokerkit
from brokerkit.cli import _output

SECRET = {secret!r}


class W(brokerkit.Worker):
    def run(self, *args, **kwargs):
        # what a driver's error quoted in a library WARNING, or a note, would carry
        logging.getLogger("brokerkit.redis").warning("AUTH refused for %r", SECRET)
        _output.err.print("a note quoting the driver: " + SECRET)
        print("hidden:", len(_output._HIDDEN), file=sys.__stdout__)
        self.drained = True


worker = W({broker})
"""


def _worker(tmp_path: Path, secret: str, broker: str, args: list[str], env_url: str = "") -> str:
    module = f"wmod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(_MODULE.format(secret=secret, broker=broker))
    env = {k: v for k, v in os.environ.items() if k not in ("BROKERKIT_URL", "BROKERKIT_DEBUG")}
    env["PYTHONPATH"] = str(_ROOT)
    if env_url:
        env["BROKERKIT_URL"] = env_url
    done = subprocess.run(
        [sys.executable, "-c", _CMD, "worker", f"{module}:worker", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "a note quoting the driver: ***" in done.stderr, done.stderr
    assert "AUTH refused for" in done.stderr, done.stderr
    return done.stderr


def test_worker_masks_the_secrets_of_its_url_argument(tmp_path: Path) -> None:
    secret = f"Tr0ub{uuid.uuid4().hex[:8]}"
    url = f"memory://shop-{uuid.uuid4().hex[:8]}/token={secret}"
    stderr = _worker(tmp_path, secret, "None", [url])
    assert secret not in stderr, stderr


def test_worker_masks_the_secrets_of_brokerkit_url(tmp_path: Path) -> None:
    secret = f"Tr0ub{uuid.uuid4().hex[:8]}"
    url = f"memory://shop-{uuid.uuid4().hex[:8]}/token={secret}"
    stderr = _worker(tmp_path, secret, "None", [], env_url=url)
    assert secret not in stderr, stderr


def test_worker_masks_the_secrets_of_its_modules_own_broker(tmp_path: Path) -> None:
    secret = f"Tr0ub{uuid.uuid4().hex[:8]}"
    url = f"memory://own-{uuid.uuid4().hex[:8]}/token={secret}"
    stderr = _worker(tmp_path, secret, f"brokerkit.connect({url!r})", [])
    assert secret not in stderr, stderr


def test_a_command_that_is_not_url_first_hides_its_url_while_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as demo, backends and a plugin's commands are: added without the URL-first class
    monkeypatch.delenv("BROKERKIT_URL", raising=False)
    seen: list[list[str]] = []
    app = build_app()

    @app.command("probe-review27b")
    def probe(url: str) -> None:
        seen.append(list(_output._HIDDEN))

    url = "redis+stream://:Pw27bx@127.0.0.1:1/0"
    typer.main.get_command(app).main(
        args=["probe-review27b", url], prog_name="brokerkit", standalone_mode=False
    )
    assert seen and url in seen[0], seen
    assert _output._HIDDEN == []
