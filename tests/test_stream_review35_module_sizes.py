"""redis+stream's broker and settling modules stay under the project's ~500-line bound
for a module: the broker's fetch (reclaiming and reading, :mod:`.fetching_async`) and
the settling's nack side (:mod:`.nacking_async`) are modules of their own. Before,
broker_async.py had 523 lines (its twin 519), settle_async.py 509 (its twin too)."""

from __future__ import annotations

from pathlib import Path

import pytest

import brokerkit.backends.redis.stream as stream

#: Lines a module of this package may have, with room under the ~500 bound.
MOST = 480


@pytest.mark.parametrize("name", ["broker_async.py", "broker.py", "settle_async.py", "settle.py"])
def test_the_module_is_under_the_bound(name: str) -> None:
    path = Path(stream.__file__).with_name(name)
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < MOST, f"{name}: {lines} lines"
