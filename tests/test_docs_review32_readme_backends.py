"""The README's backends table says what each backend class declares: every yes/no
cell against ``capabilities`` of the class its URL's scheme resolves to (and of its
asyncio twin), and every built-in backend has a row. docs/concepts.md's tables are
checked so by tests/test_capability_table.py; the README's, the first a reader sees,
was checked by nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from brokerkit import Capability
from brokerkit._plugins import _registry

README = Path(__file__).resolve().parent.parent / "README.md"
#: The README's columns and the capability each stands for.
COLUMNS = {
    "persistent": Capability.PERSISTENT,
    "ack": Capability.ACK,
    "competing": Capability.COMPETING,
    "fan-out": Capability.FANOUT,
    "replay": Capability.REPLAY,
    "dead letter": Capability.DEAD_LETTER,
    "patterns": Capability.PATTERNS,
    "bounded": Capability.BOUNDED,
    "delay": Capability.DELAY,
}


def _declares(cell: str) -> bool:
    """What a cell says: "yes", "yes (groups)", "in this process only" declare the
    capability; "no" and "n/a" do not."""
    if cell.startswith(("yes", "in this process")):
        return True
    assert cell in ("no", "n/a"), f"README.md: a backends cell says {cell!r}"
    return False


def _rows() -> dict[str, dict[str, str]]:
    """scheme -> column -> cell."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| URL | backend |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        scheme = re.fullmatch(r"`([a-z0-9+]+)://[^`]*`", cells[0])
        assert scheme, f"README.md: a backends row starts {cells[0]!r}"
        rows[scheme[1]] = dict(zip(header, cells, strict=True))
    return rows


ROWS = _rows()


def test_the_table_has_a_column_for_each_capability_it_names() -> None:
    assert set(next(iter(ROWS.values()))) == {"URL", "backend", *COLUMNS}


def test_every_built_in_backend_has_a_row() -> None:
    registry = _registry()
    documented = {registry.get(scheme).load() for scheme in ROWS}
    built_in = {
        info.load()
        for info in map(registry.get, registry.schemes())
        if info.plugin.startswith("brokerkit.")
    }
    missing = sorted(cls.__name__ for cls in built_in - documented)
    assert not missing, f"README.md's backends table leaves out {missing}"


@pytest.mark.parametrize("scheme", sorted(ROWS))
def test_a_row_matches_the_backend_class(scheme: str) -> None:
    info = _registry().get(scheme)
    classes = [info.load()]
    twin = info.load_async()
    if twin is not None:
        classes.append(twin)
    for cls in classes:
        wrong = [
            f"{column}: the README says {ROWS[scheme][column]!r}, {cls.__name__} "
            f"{'declares' if capability in cls.capabilities else 'lacks'} it"
            for column, capability in COLUMNS.items()
            if _declares(ROWS[scheme][column]) != (capability in cls.capabilities)
        ]
        assert not wrong, f"README.md's backends table, {scheme}: {wrong}"
