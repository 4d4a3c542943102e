"""A stream's entries as (id, size of their fields), and what an ``XRANGE`` a script
ran (seen through MONITOR: :mod:`tests.script_monitor`) returned from them: tests
count the bytes a script call copied rather than time it."""

from __future__ import annotations

import redis

__all__ = ["Entry", "entries", "entry_id", "replayed"]

Entry = tuple[tuple[int, int], int]  # (id, size of its fields)


def entry_id(text: str) -> tuple[int, int]:
    """A stream entry id ``<ms>-<seq>`` as a pair that orders as ids do."""
    ms, seq = text.split("-")
    return int(ms), int(seq)


def entries(client: redis.Redis, key: str) -> list[Entry]:
    """Every entry of the stream ``key``, as (id, size of its fields)."""
    return [
        (entry_id(i.decode()), sum(len(k) + len(v) for k, v in fields.items()))
        for i, fields in client.xrange(key)
    ]


def replayed(stream: list[Entry], command: tuple[str, ...]) -> list[Entry]:
    """What ``XRANGE key start end COUNT n`` returned from ``stream``."""
    assert command[0] == "XRANGE" and len(command) == 6 and command[4].upper() == "COUNT"
    _, _, start, end, _, count = command

    def after_start(i: tuple[int, int]) -> bool:
        if start == "-":
            return True
        return i > entry_id(start[1:]) if start.startswith("(") else i >= entry_id(start)

    def before_end(i: tuple[int, int]) -> bool:
        if end == "+":
            return True
        return i < entry_id(end[1:]) if end.startswith("(") else i <= entry_id(end)

    return [e for e in stream if after_start(e[0]) and before_end(e[0])][: int(count)]
