"""benchmarks/moves.py, the design probe: what it counts of a round's SLOWLOG."""

from __future__ import annotations

from typing import Any

import pytest


class _FakeSlowlog:
    """A client whose SLOWLOG holds ``entries`` (newest first, as Redis gives them)."""

    def __init__(self, entries: list[list[Any]]) -> None:
        self.entries = entries

    def execute_command(self, *args: Any) -> list[list[Any]]:
        assert args[:2] == ("SLOWLOG", "GET")
        return self.entries[: args[2]]


def _entry(usec: int, *argv: bytes, address: bytes = b"127.0.0.1:5000") -> list[Any]:
    return [0, 0, usec, list(argv), address, b""]


def test_a_round_counts_top_level_commands_but_the_slowlogs_own_reset() -> None:
    from benchmarks.moves import _top_level_usec

    fake = _FakeSlowlog(
        [
            _entry(40, b"LRANGE", b"batch", b"0", b"-1"),
            _entry(30, b"SORT", b"queue", b"BY", b"nosort", address=b"?:0"),  # in the script
            _entry(100, b"EVALSHA", b"abc", b"2", b"queue", b"batch"),
            _entry(500, b"SLOWLOG", b"RESET"),  # freeing the entries before the round
        ]
    )
    assert _top_level_usec(fake) == 140


def test_a_slowlog_that_filled_up_is_refused() -> None:
    from benchmarks.moves import _SLOWLOG_ROOM, _top_level_usec

    fake = _FakeSlowlog([_entry(1, b"LMOVE", b"q", b"p") for _ in range(_SLOWLOG_ROOM)])
    with pytest.raises(RuntimeError, match="filled up"):
        _top_level_usec(fake)
