"""``BROKERKIT_URL=`` (set but empty) for a worker with no broker of its own: the
usage error says to set the variable to a URL or give one, not to unset it "to run it
on its worker's own broker", which there is none of (review 37)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("typer")

from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV


def test_the_hint_gives_a_url_to_a_worker_without_a_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(URL_ENV, "")
    (tmp_path / "no_broker_app37.py").write_text(
        textwrap.dedent(
            """
            import brokerkit

            worker = brokerkit.Worker()

            @worker.handler("t")
            def handle(body):
                raise AssertionError("the worker must not run")
            """
        )
    )
    try:
        assert run(["worker", "no_broker_app37:worker"]) == 2
    finally:
        sys.modules.pop("no_broker_app37", None)
    stderr = " ".join(capsys.readouterr().err.split())
    assert f"${URL_ENV} is set but empty" in stderr, stderr
    assert "unset it" not in stderr and "own broker" not in stderr, stderr
    assert "no_broker_app37:worker has no broker of its own" in stderr, stderr
    assert "brokerkit worker no_broker_app37:worker redis+stream://" in stderr, stderr
