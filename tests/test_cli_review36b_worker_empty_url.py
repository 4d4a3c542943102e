"""``brokerkit worker`` refuses a ``BROKERKIT_URL`` set but empty, as ``connect()`` does
(docs/concepts.md), rather than running on the worker's own broker unnoticed (review 36:
a deployment whose variable came out blank ran its workers on whatever the module made,
``memory://`` in the simplest case)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("typer")

from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_broker_url_variable_is_refused_naming_it(
    blank: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(URL_ENV, blank)
    (tmp_path / "own_broker_app36.py").write_text(
        textwrap.dedent(
            """
            import brokerkit

            worker = brokerkit.Worker(brokerkit.connect("memory://"))

            @worker.handler("t")
            def handle(body):
                raise AssertionError("the worker must not run")
            """
        )
    )
    try:
        assert run(["worker", "own_broker_app36:worker"]) == 2
    finally:
        sys.modules.pop("own_broker_app36", None)
    stderr = capsys.readouterr().err
    assert f"${URL_ENV} is set but empty" in stderr, stderr
