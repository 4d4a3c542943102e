"""``brokerkit demo --orders`` and ``--sale-orders`` take 1 to 100,000 orders, and
refuse more as a usage error (status 2) before the demo connects; ``DemoConfig``
refuses them too. Before, any count was taken, and every order of a scene is made
in memory before it starts: ``--orders 99999999999999999999`` ran the process (and
the machine) out of memory."""

from __future__ import annotations

import pytest

pytest.importorskip("typer")

from brokerkit.cli._app import run
from brokerkit.demo import DemoConfig
from brokerkit.exceptions import InvalidOption

# A scheme nothing serves: the counts must be refused before the URL is used (and a
# test run before the fix fails on the URL, before it makes any order).
_NOWHERE = "nowhere+demo://host/0"


@pytest.mark.parametrize("option", ["--orders", "--sale-orders"])
@pytest.mark.parametrize("count", ["100001", "99999999999999999999", "0"])
def test_a_count_out_of_range_is_a_usage_error(
    option: str, count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["demo", _NOWHERE, option, count]) == 2
    captured = capsys.readouterr()
    assert option in captured.err, captured.err
    assert "from 1 to 100,000" in captured.err and f"got {count}" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("field", ["orders", "sale_orders"])
@pytest.mark.parametrize("count", [0, 100_001, 10**20, True, 2.0])
def test_the_demo_config_refuses_a_count_out_of_range(field: str, count: object) -> None:
    with pytest.raises(InvalidOption, match=f"{field} must be a whole number from 1 to 100,000"):
        DemoConfig(**{field: count})  # type: ignore[arg-type]
