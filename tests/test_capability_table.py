"""docs/concepts.md's capability tables say what each backend class declares: every
cell, for every capability and every built-in backend, against ``capabilities`` of the
class its scheme resolves to (and of its asyncio twin)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from brokerkit import Capability
from brokerkit._plugins import _registry

CONCEPTS = Path(__file__).resolve().parent.parent / "docs" / "concepts.md"

#: What a cell may say, and whether it means the capability is declared.
CELLS = {"yes": True, "in this process": True, "no": False, "n/a": False}

CAPABILITIES = [c for c in Capability if c is not Capability.NONE and c.name]


def _rows(text: str, first_header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header starts with ``first_header``,
    header first, without the separator row."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if re.fullmatch(r"\|(\s*-+\s*\|)+", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _table() -> dict[tuple[str, str], str]:
    """(scheme, capability name) -> the cell, from both tables."""
    text = CONCEPTS.read_text(encoding="utf-8")
    cells: dict[tuple[str, str], str] = {}
    # Capabilities as rows, backends as columns (after "capability" and "meaning").
    header, *rows = _rows(text, "capability")
    assert header[:2] == ["capability", "meaning"], header
    for row in rows:
        for scheme, cell in zip(header[2:], row[2:], strict=True):
            cells[(scheme, row[0])] = cell
    # Backends as rows, capabilities as columns (kombu's virtual transports).
    header, *rows = _rows(text, "backend")
    assert header[0] == "backend", header
    for row in rows:
        for name, cell in zip(header[1:], row[1:], strict=True):
            cells[(row[0], name)] = cell
    return cells


TABLE = _table()
SCHEMES = sorted({scheme for scheme, _ in TABLE})


def test_the_tables_cover_every_capability_for_every_backend() -> None:
    names = {c.name for c in CAPABILITIES}
    for scheme in SCHEMES:
        listed = {name for s, name in TABLE if s == scheme}
        assert listed == names, f"docs/concepts.md: {scheme}'s capabilities: {sorted(listed)}"
    bad = {key: cell for key, cell in TABLE.items() if cell not in CELLS}
    assert not bad, f"docs/concepts.md: cells that say neither {sorted(CELLS)}: {bad}"


def test_the_tables_cover_every_built_in_backend() -> None:
    """Each built-in backend class has a column or a row, under one of its schemes."""
    registry = _registry()
    documented = {registry.get(scheme).load() for scheme in SCHEMES}
    built_in = {
        info.load()
        for info in map(registry.get, registry.schemes())
        if info.plugin.startswith("brokerkit.")
    }
    missing = sorted(cls.__name__ for cls in built_in - documented)
    assert not missing, f"docs/concepts.md's capability tables leave out {missing}"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_capability_table_matches_the_backend_class(scheme: str) -> None:
    info = _registry().get(scheme)
    classes = [info.load()]
    twin = info.load_async()
    if twin is not None:
        classes.append(twin)
    for cls in classes:
        wrong = [
            f"{capability.name}: the table says {TABLE[(scheme, capability.name)]!r}, "
            f"{cls.__name__} {'declares' if capability in cls.capabilities else 'lacks'} it"
            for capability in CAPABILITIES
            if CELLS[TABLE[(scheme, capability.name)]] != (capability in cls.capabilities)
        ]
        assert not wrong, f"docs/concepts.md's capability table, {scheme}: {wrong}"
