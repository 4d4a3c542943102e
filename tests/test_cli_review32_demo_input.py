"""``brokerkit demo`` refuses a bad ``--speed`` or ``--plot`` before any scene runs,
as a usage error (status 2) saying what is valid. Before, ``--speed inf`` (or
``1e300``) ran the first scene into "unexpected OverflowError: timestamp out of range"
(status 1), ``--speed 1e6`` slept for days, ``--speed nan`` was refused as "Input
should be greater than or equal to 0", and a ``--plot`` file with another ending, or
in a directory that does not exist, was refused (the latter as a bare "[Errno 2]")
only once every scene had run: on a broker URL, after the demo wrote there."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

pytest.importorskip("typer")

from rich.console import Console

from brokerkit.cli._app import run
from brokerkit.demo import DemoConfig, run_demo
from brokerkit.exceptions import BrokerError, InvalidOption

SMALL = ["--orders", "1", "--sale-orders", "20"]


@pytest.mark.parametrize("speed", ["inf", "1e300", "nan", "-1", "101"])
def test_a_speed_out_of_range_is_a_usage_error(
    speed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["demo", *SMALL, "--speed", speed]) == 2
    captured = capsys.readouterr()
    assert "--speed" in captured.err and "0 to 100" in captured.err, captured.err
    assert "unexpected" not in captured.err, captured.err
    assert captured.out == ""  # no scene ran


@pytest.mark.parametrize("name", ["chart.txt", "missing/chart.svg", "."])
def test_a_plot_that_cannot_be_written_is_refused_before_the_demo_runs(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / name
    assert run(["demo", *SMALL, "--speed", "0", "--plot", str(target)]) == 2
    captured = capsys.readouterr()
    assert "--plot" in captured.err and "cannot write a chart" in captured.err, captured.err
    assert "Errno" not in captured.err, captured.err
    assert captured.out == ""  # no scene ran
    assert not target.exists() or target.is_dir()


def test_a_good_plot_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "chart.svg"
    assert run(["demo", *SMALL, "--speed", "0", "--plot", str(target)]) == 0
    assert target.read_text(encoding="utf-8").startswith("<svg")
    capsys.readouterr()


@pytest.mark.parametrize("speed", [math.inf, math.nan, -0.5, 1e9, True, "1"])
def test_the_demo_config_refuses_a_bad_speed(speed: object) -> None:
    with pytest.raises(InvalidOption, match="speed must be a number from 0 to 100"):
        DemoConfig(speed=speed)  # type: ignore[arg-type]


def test_run_demo_refuses_a_bad_plot_before_its_first_scene(tmp_path: Path) -> None:
    shown = io.StringIO()
    config = DemoConfig(orders=1, sale_orders=20, speed=0, plot=tmp_path / "chart.txt")
    with pytest.raises(BrokerError, match=r"use a file name ending in \.html, \.svg or \.png"):
        run_demo(config, Console(file=shown))
    assert shown.getvalue() == ""
