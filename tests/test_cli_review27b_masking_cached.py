"""Masking a line of stderr does not parse the command's URLs again for each line: it
cost about 0.1 ms a write (every log line of a worker goes through it), the URLs
re-parsed and the patterns rebuilt each time. What to mask is worked out once for each
set of hidden arguments; a URL hidden or forgotten later still counts at once."""

from __future__ import annotations

import pytest

from brokerkit.cli import _output
from brokerkit.cli._output import err, hide_secrets_of


def test_a_line_masked_again_does_not_parse_the_urls_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parsed: list[str] = []
    url_of = _output._url_of

    def counted(argument: str) -> object:
        parsed.append(argument)
        return url_of(argument)

    monkeypatch.setattr(_output, "_url_of", counted)
    url = "redis+stream://:Pw27bCache@127.0.0.1:1/0?sentinel=m&sentinel_password=Sx27bC&db=1"
    forget = hide_secrets_of(["worker", "m:worker", url])
    try:
        err.print("first Pw27bCache")
        before = len(parsed)
        for _ in range(5):
            err.print("again Pw27bCache Sx27bC")
    finally:
        forget()
    captured = capsys.readouterr().err
    assert "Pw27bCache" not in captured and "Sx27bC" not in captured, captured
    assert len(parsed) == before, parsed


def test_a_url_hidden_later_or_forgotten_counts_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    forget_a = hide_secrets_of(["redis+stream://:PwA27bq@h/0"])
    try:
        err.print("one PwA27bq PwB27bq")
        forget_b = hide_secrets_of(["redis+stream://:PwB27bq@h/0"])
        err.print("two PwA27bq PwB27bq")
        forget_b()
        err.print("three PwA27bq PwB27bq")
    finally:
        forget_a()
    err.print("four PwA27bq")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "one *** PwB27bq",
        "two *** ***",
        "three *** PwB27bq",
        "four PwA27bq",
    ], lines
