"""benchmarks/fetchcall.py, the probe of redis+list's fetch call: its steps name lines
of the script, and a run leaves nothing behind."""

from __future__ import annotations

import pytest
import redis

from benchmarks.fetchcall import STEPS, measure, with_cut
from brokerkit.backends.redis.list.scripts import FETCH
from tests.redis_server import RedisServer


@pytest.mark.parametrize("step", STEPS)
def test_every_step_cuts_the_script_at_a_line_of_its_own(step: str) -> None:
    assert FETCH.count("\n" + step) == 1, "a step must start exactly one line of FETCH"
    cut = with_cut(FETCH, step)
    assert cut.replace("do return {0} end\n", "", 1) == FETCH
    assert cut.index("do return {0} end\n" + step) > 0


def test_a_measured_call_leases_and_leaves_nothing_behind(redis_server: RedisServer) -> None:
    url = redis_server.url("redis")
    times = measure(url, 100, blocks=1, steps=True)
    assert set(times) >= {"whole script", "the call and its preamble"}
    assert all(len(v) == 1 and v[0] > 0 for v in times.values())
    r = redis.Redis.from_url(url)
    assert not list(r.scan_iter(match="bench-fetchcall-*"))
    assert r.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"] != "-1"


def test_the_script_of_another_commit_is_written_by_that_commits_code() -> None:
    from benchmarks.fetchcall import script_at

    # 4308915: the last commit whose FETCH trimmed the queue after each batch's SORT
    text = script_at("4308915")
    assert "'LIMIT', 0, n, 'DESC'" in text and "'LIMIT', from, n, 'DESC'" not in text
    assert "'LIMIT', from, n, 'DESC'" in FETCH
    # the same locals ahead of the preamble's functions (which functions follow depends
    # on what each version's body calls)
    assert text.startswith(FETCH[: FETCH.index("local function")])
