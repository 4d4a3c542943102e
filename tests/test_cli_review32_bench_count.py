"""``brokerkit bench --count`` takes 1 to 1,000,000 messages per step, as ``publish
--count`` does, and refuses more as a usage error (status 2) before it connects.
Before, any count was taken: ``-n 99999999999999999999`` published on and on into
memory (memory:// holds every message of a round in the process; ``publish_many``
first lists the count's batches), until the machine ran out of it."""

from __future__ import annotations

import pytest

pytest.importorskip("typer")

from brokerkit.cli._app import run

# A scheme nothing serves: the count must be refused before the URL is used (and a
# test run before the fix fails on the URL, without publishing anything).
_NOWHERE = "nowhere+bench://host/0"


@pytest.mark.parametrize("count", ["1000001", "99999999999999999999", "0", "-5"])
def test_a_count_out_of_range_is_a_usage_error(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["bench", _NOWHERE, "--count", count, "--step", "publish"]) == 2
    err = capsys.readouterr().err
    assert "--count" in err and "from 1 to 1,000,000" in err and f"got {count}" in err, err


def test_a_count_in_range_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["bench", "memory://", "-n", "20", "--step", "publish", "--json"]) == 0
    assert '"messages": 20' in capsys.readouterr().out
