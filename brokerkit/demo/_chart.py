"""The flash-sale chart: queue depth, published and processed over time, as a
self-contained SVG (or an HTML page around it). No plotting library needed."""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path

from brokerkit.demo._peak import Sample
from brokerkit.exceptions import BrokerError

__all__ = ["CHART_SUFFIXES", "check_chart_path", "render_svg", "write_chart"]

#: The file name endings a chart can be written to.
CHART_SUFFIXES = (".html", ".htm", ".svg", ".png")

_WIDTH, _HEIGHT = 760, 360
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 20, 40, 48
_SERIES = (
    ("published", "#2563eb"),
    ("processed", "#16a34a"),
    ("backlog", "#dc2626"),
)


def _value(sample: Sample, series: str) -> int:
    return sample.backlog if series == "backlog" else int(getattr(sample, series))


def render_svg(samples: Sequence[Sample], *, title: str) -> str:
    """An SVG line chart of ``samples``: the backlog rising and draining, with
    the published and processed counts for reference."""
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    t_max = max((s.t for s in samples), default=1.0) or 1.0
    y_max = max((s.published for s in samples), default=1) or 1

    def x(t: float) -> float:
        return _LEFT + plot_w * t / t_max

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="white"/>',
        f'<text x="{_WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    for i in range(5):
        value = y_max * i / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#e5e7eb"/>'
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.0f}</text>'
        )
        t = t_max * i / 4
        parts.append(
            f'<text x="{x(t):.1f}" y="{_TOP + plot_h + 18}" text-anchor="middle">{t:.1f}s</text>'
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_HEIGHT - 8}" text-anchor="middle">'
        "seconds since the sale opened</text>"
        f'<text x="16" y="{_TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {_TOP + plot_h / 2})">orders</text>'
    )
    for n, (series, colour) in enumerate(_SERIES):
        points = " ".join(f"{x(s.t):.1f},{y(_value(s, series)):.1f}" for s in samples)
        width = 3 if series == "backlog" else 1.5
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{points}"/>'
        )
        lx = _LEFT + 12 + 120 * n
        parts.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{_TOP + 8}" y2="{_TOP + 8}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<text x="{lx + 24}" y="{_TOP + 12}">{series}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def write_chart(path: str | Path, samples: Sequence[Sample], *, title: str) -> Path:
    """Write the chart to ``path``: ``.svg`` as it is, ``.html`` as a page around
    it, ``.png`` through matplotlib when it is installed.

    :raises BrokerError: the suffix is none of these, or ``.png`` without matplotlib.
    """
    target = check_chart_path(path)
    suffix = target.suffix.lower()
    try:
        if suffix == ".png":
            _write_png(target, samples, title)
            return target
        svg = render_svg(samples, title=title)
        if suffix == ".svg":
            target.write_text(svg, encoding="utf-8")
        else:
            target.write_text(
                "<!doctype html>\n<html><head><meta charset='utf-8'>"
                f"<title>{escape(title)}</title></head>\n<body>\n{svg}\n</body></html>\n",
                encoding="utf-8",
            )
    except OSError as exc:
        raise BrokerError(
            f"cannot write a chart to {str(target)!r}: {exc.strerror or exc}"
        ) from None
    return target


def check_chart_path(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path`, once it is one a chart can be written to:
    checked before the demo runs, so that a mistyped ``--plot`` is not found after
    every scene ran.

    :raises BrokerError: its name ends in none of :data:`CHART_SUFFIXES`; ``.png``
        without matplotlib; its directory does not exist or cannot be written to; it
        is a directory.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    where = f"cannot write a chart to {str(target)!r}"
    if suffix not in CHART_SUFFIXES:
        raise BrokerError(f"{where}: use a file name ending in .html, .svg or .png")
    if suffix == ".png" and importlib.util.find_spec("matplotlib") is None:
        raise BrokerError(_NO_MATPLOTLIB)
    folder = target.parent
    if not folder.is_dir():
        raise BrokerError(f"{where}: the directory {str(folder)!r} does not exist")
    if target.is_dir():
        raise BrokerError(f"{where}: it is a directory")
    if not os.access(target if target.exists() else folder, os.W_OK):
        raise BrokerError(f"{where}: permission denied")
    return target


_NO_MATPLOTLIB = (
    "a .png chart needs matplotlib (pip install matplotlib); "
    "or write an .html or .svg chart, which needs nothing"
)


def _write_png(target: Path, samples: Sequence[Sample], title: str) -> None:
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise BrokerError(_NO_MATPLOTLIB) from None
    figure, axes = plt.subplots(figsize=(8, 4))
    times = [s.t for s in samples]
    for series, colour in _SERIES:
        axes.plot(times, [_value(s, series) for s in samples], label=series, color=colour)
    axes.set(title=title, xlabel="seconds since the sale opened", ylabel="orders")
    axes.legend()
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)
