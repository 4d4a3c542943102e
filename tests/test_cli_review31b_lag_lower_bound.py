"""``inspect`` and ``topics`` show a lag that is a lower bound as one (review 31b of
the command line).

Since f42eb0a redis+stream counts a lag Redis does not give (``XINFO GROUPS`` lag nil:
Redis 6.2, or 7.x after an ``XDEL`` past the group's position) up to 10,000 entries,
reported as 10,000 with ``StreamGroupInfo.lag_exact`` False. The tables printed
``10000``, an exact-looking count of a group at least that far behind. Now they print
``≥10000`` (``>= 10000`` where stdout's encoding has no ``≥``); JSON gives the number
and ``lag_exact``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import RedisTarget

pytest.importorskip("typer")

#: Seconds a child may take: a hang guard, never a pace.
GUARD = 60.0
#: brokerkit.backends.redis.stream.inspect_async.LAG_COUNT_LIMIT
LIMIT = 10_000


@pytest.fixture
def url(redis_target: RedisTarget, redis_client: redis.Redis, prefix: str) -> Iterator[str]:
    """A stream ``t`` of LIMIT + 50 entries (another program's), with the group
    ``behind`` at its 10th entry and ``close`` at its 10,040th, and an entry deleted past
    both: Redis gives neither a lag; ``behind`` is counted to the limit only."""
    key = f"{prefix}:{{t}}"
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1, LIMIT + 51):
        pipe.xadd(key, {"body": b"x"}, id=f"{n}-0")
    pipe.execute()
    redis_client.xgroup_create(key, "behind", id="10-0")
    redis_client.xgroup_create(key, "close", id=f"{LIMIT + 40}-0")
    redis_client.xdel(key, f"{LIMIT + 45}-0")
    try:
        yield redis_target.url("redis+stream", prefix=prefix)
    finally:
        keys = list(redis_client.scan_iter(match=f"{prefix}*"))
        if keys:
            redis_client.delete(*keys)


def _run(*argv: str, encoding: str = "utf-8") -> str:
    env = {**os.environ, "PYTHONIOENCODING": encoding, "COLUMNS": "200"}
    env.pop("BROKERKIT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=GUARD,
        env=env,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode(encoding)


def _row(table: str, first: str) -> list[str]:
    """The cells of the table's row whose first cell is ``first``."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("│┃|").replace("┃", "│").split("│")]
        if len(cells) == 1:
            cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in\n{table}")


def test_inspect_shows_a_lower_bound(url: str) -> None:
    table = _run("inspect", url, "t")
    assert _row(table, "behind")[3] == f"\u2265{LIMIT}", table
    assert _row(table, "close")[3] == "9", table  # counted whole: exact


def test_inspect_without_the_sign_writes_it_in_ascii(url: str) -> None:
    table = _run("inspect", url, "t", encoding="ascii")
    assert _row(table, "behind")[3] == f">= {LIMIT}", table


def test_topics_shows_the_largest_lag_as_a_lower_bound(url: str) -> None:
    table = _run("topics", url, "-t", "t")
    assert f"\u2265{LIMIT}" in _row(table, "t"), table


def test_json_gives_the_number_and_lag_exact(url: str) -> None:
    inspected = json.loads(_run("inspect", url, "t", "--json"))
    listed = json.loads(_run("topics", url, "-t", "t", "--json"))
    for info in [inspected, *listed]:
        groups = {g["name"]: g for g in info["groups"]}
        assert (groups["behind"]["lag"], groups["behind"]["lag_exact"]) == (LIMIT, False)
        assert (groups["close"]["lag"], groups["close"]["lag_exact"]) == (9, True)
