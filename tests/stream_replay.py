"""A stream's entries as (id, size of their fields), and what an ``XRANGE`` a script
ran (seen through MONITOR: :mod:`tests.script_monitor`) returned from them: tests
count the bytes a script call copied rather than time it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from tests.script_monitor import ScriptMonitor

__all__ = ["Entry", "entries", "entry_id", "purge_steps", "replayed"]

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


@contextmanager
def purge_steps(
    broker: Any,
    client: redis.Redis,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    arguments: int | None = None,
) -> Iterator[tuple[list[list[Entry]], ScriptMonitor]]:
    """Within: the stream ``key`` as it was before each of ``broker``'s purge steps
    (and, once left, after the last), and the scripts' commands seen through MONITOR
    (``arguments`` of each kept: see :class:`ScriptMonitor`), for a purge run here."""
    steps = broker._scripts.purge_step
    streams: list[list[Entry]] = []

    def step(*args: Any, **kwargs: Any) -> Any:
        streams.append(entries(client, key))
        return steps(*args, **kwargs)

    monkeypatch.setattr(broker._scripts, "purge_step", step)
    with ScriptMonitor(client, arguments=arguments) as calls:
        yield streams, calls
    streams.append(entries(client, key))
