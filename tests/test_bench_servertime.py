"""The benchmark suite's server-time meter (benchmarks/servertime.py)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from benchmarks import servertime
from benchmarks.servertime import ServerMeter, ServerTime, unreadable_server
from brokerkit.backends.redis.list import scripts as list_scripts
from tests.redis_server import RedisServer

_SCRIPT = "for i = 1, 20 do redis.call('SET', KEYS[1], i) end return 1"


@pytest.fixture
def meter(redis_server: RedisServer) -> Iterator[ServerMeter]:
    meter = ServerMeter(redis_server.url("redis"))
    yield meter
    meter.close()


def _round(meter: ServerMeter, client: redis.Redis, side: str = "s") -> ServerTime:
    meter.begin(side, "step")
    for _ in range(5):
        client.eval(_SCRIPT, 1, "k")
        client.get("k")
    return meter.end(5)


def test_a_script_counts_once_and_its_commands_are_listed(
    meter: ServerMeter, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url("redis"))
    for attributing in (True, False):
        time = _round(meter, client)
        assert time.commands["eval"][0] == 5
        assert time.commands["set"][0] == 100  # run by the script, counted by Redis too
        assert time.commands["get"][0] == 5
        assert time.nested["set"] == 1.0
        assert time.nested["get"] == 0.0
        # everything but the script's SETs (the client's connection set-up included)
        expected = sum(us for c, (_, us) in time.commands.items() if c != "set") / 5
        assert time.total_us == pytest.approx(expected)
        assert time.us_per_message("set") > 0
        if attributing:
            assert set(time.scripts) == {"EVAL"}
    # the meter's own commands are never counted, and the SLOWLOG is back as it was
    assert "info" not in time.commands
    assert meter.r.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"] != "0"
    client.close()


def test_a_transaction_counts_its_commands_once(
    meter: ServerMeter, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url("redis"))
    for _ in range(2):  # the attribution round, then a measured one
        meter.begin("side", "step")
        for _ in range(5):
            with client.pipeline(transaction=True) as pipe:
                pipe.set("k", "v").get("k").execute()
        time = meter.end(5)
        assert time.commands["exec"][0] == 5
        expected = sum(us for c, (_, us) in time.commands.items() if c != "exec") / 5
        assert time.total_us == pytest.approx(expected)
    client.close()


def test_a_command_run_both_ways_is_split_by_time_not_by_calls(
    meter: ServerMeter, redis_server: RedisServer
) -> None:
    """A script's cheap LRANGE of one element and the client's dear LRANGE of 20,000:
    as many calls each, nearly all the time at top level, where it counts."""
    client = redis.Redis.from_url(redis_server.url("redis"))
    client.rpush("small", 1)
    for start in range(0, 20_000, 1000):
        client.rpush("big", *range(start, start + 1000))
    meter.begin("s", "step")
    for _ in range(5):
        client.eval("return #redis.call('LRANGE', KEYS[1], 0, -1)", 1, "small")
        client.lrange("big", 0, -1)
    time = meter.end(5)
    assert time.commands["lrange"][0] == 10
    assert time.nested["lrange"] < 0.2  # by calls it would be 0.5
    top = time.us_per_message("lrange") * (1 - time.nested["lrange"])
    assert top > time.us_per_message("lrange") * 0.8
    client.close()


def test_commands_before_the_mark_are_not_counted(
    meter: ServerMeter, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url("redis"))
    meter.begin("s", "step")
    client.lpush("prefill", *range(10))
    client.eval(_SCRIPT, 1, "k")
    servertime.mark()
    client.rpop("prefill")
    time = meter.end(1)
    assert "lpush" not in time.commands
    assert "eval" not in time.commands
    assert time.scripts == {}  # the attribution round's SLOWLOG starts at the mark too
    assert time.nested == {"rpop": 0.0}
    assert time.commands["rpop"][0] == 1
    servertime.mark()  # no meter running: nothing happens
    client.close()


def test_slowlog_tells_script_commands_and_names_brokerkit_scripts(
    meter: ServerMeter, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url("redis"))
    meter.r.config_set("slowlog-log-slower-than", 0)
    meter.r.execute_command("SLOWLOG", "RESET")
    client.eval(_SCRIPT, 1, "k")
    entries = [e for e in servertime.slowlog(meter.r) if e.client != servertime.METER_CLIENT]
    assert [e.command for e in entries if e.nested] == ["set"] * 20
    assert [e.command for e in entries if not e.nested][-1] == "eval"
    sha = hashlib.sha1(list_scripts.FETCH.encode()).hexdigest().encode()
    assert meter.script_of([b"EVALSHA", sha, b"0"]) == "list.scripts.FETCH"
    assert meter.script_of([b"GET", b"k"]) is None
    client.close()


def _time(total_eval: int, messages: int = 10) -> ServerTime:
    commands = {"evalsha": (1, total_eval), "xack": (1, 5), "xreadgroup": (1, 20), "exec": (1, 7)}
    nested = {"evalsha": 0.0, "xack": 1.0, "xreadgroup": 0.0, "exec": 1.0}
    return ServerTime(messages, commands, nested, {"stream.scripts.ACK": (1, total_eval)})


def test_the_report_gives_per_round_ratios_and_marks_nested_commands() -> None:
    from benchmarks.report_server import breakdown, server_cell, server_ratio

    server = {
        "redis+stream": {"consume_ack_p100": [_time(80), _time(180), _time(380)]},
        "raw stream": {"consume_ack_p100": [ServerTime(10, {"xreadgroup": (1, 50)})] * 3},
    }
    # totals per message: (eval + xreadgroup) / 10 = 10, 20, 40; raw 5
    assert server_cell(server, ("redis+stream", "raw stream", "kombu"), "consume_ack_p100") == (
        "20.00 / 5.00 / -"
    )
    assert server_ratio(server, "redis+stream", "raw stream", "consume_ack_p100") == "4.00"
    table = "\n".join(breakdown(server, ["redis+stream"], ["consume_ack_p100"], "x"))
    assert "XACK 0.50 (0.10x) in scripts" in table
    assert "EXEC 0.70 (0.10x) (its commands counted on their own)" in table
    assert "XREADGROUP 2.00 (0.10x) |" in table or "XREADGROUP 2.00 (0.10x)," in table
    assert "stream.scripts.ACK" in table


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
    reason="valgrind is not installed (the instruction counts need it; Debian: valgrind)",
)
def test_the_callgrind_meter_counts_each_rounds_instructions_from_its_mark(
    tmp_path: Path,
) -> None:
    """benchmarks/instructions.py: a redis-server under callgrind, counted from each
    round's mark (the prefill before it not counted) to its end."""
    from benchmarks.instructions import CallgrindMeter, callgrind_server, totals

    assert totals("events: Ir\nsummary: 1234\n") == 1234
    assert totals("nothing here") == 0
    with callgrind_server(tmp_path) as (url, pid):
        client = redis.Redis.from_url(url)
        meter = CallgrindMeter(url, pid, tmp_path)
        try:
            for side, script in (("sets", "redis.call('SET', KEYS[1], 1)"), ("loop", _SCRIPT)):
                meter.begin(side, "step")
                for _ in range(50):  # a prefill, before the mark
                    client.eval(_SCRIPT, 1, "k")
                meter.mark()
                for _ in range(5):
                    client.eval(script, 1, "k")
                meter.end(5)
        finally:
            meter.close()
        (sets,), (loop,) = meter.counts[("sets", "step")], meter.counts[("loop", "step")]
        # 20 SETs a call against 1; counted with the prefill, sets would be ~10x loop
        assert 0 < sets < loop / 2
        kept = tmp_path / "kept"
        meter = CallgrindMeter(url, pid, tmp_path, keep=kept)
        try:
            meter.begin("raw stream", "step")
            meter.mark()
            client.eval(_SCRIPT, 1, "k")
            meter.end(1)
        finally:
            meter.close()
        (dump,) = kept.iterdir()
        assert dump.name == "raw-stream.step.1.out"
        assert totals(dump.read_text()) == meter.counts[("raw stream", "step")][0] > 0


def test_the_fetch_figure_counts_a_script_once_and_puts_the_slowlog_back(
    redis_server: RedisServer,
) -> None:
    from benchmarks import bodies

    url = redis_server.url("redis")
    before = redis.Redis.from_url(url).config_get("slowlog-*")
    result = bodies.fetch_rounds(url, 100, rounds=2, say=lambda _: None)
    ran = result.commands["redis+list"]
    # the script whole, under its name (with any other the warm-up saw run); none of
    # the commands it ran counted again
    fetch = [us for name, us in ran.items() if "list.scripts.FETCH" in name]
    assert len(fetch) == 1 and fetch[0] > 0
    assert not {"SORT", "LTRIM", "LMOVE", "ZADD", "HSET", "EVALSHA"} & set(ran)
    assert set(result.commands["raw LMOVE x100"]) == {"LMOVE"}
    for side in bodies.FETCH_SIDES:
        assert len(result.rounds[side]) == 2 and all(us > 0 for us in result.rounds[side])
        assert len(result.cpu[side]) == 2  # a window's CPU, less an empty one's
    # 100 LMOVEs read and reply 100 times, one LRANGE once: the CPU tells them apart
    assert sum(result.cpu["raw LMOVE x100"]) > sum(result.cpu["raw LRANGE 100"])
    assert redis.Redis.from_url(url).config_get("slowlog-*") == before


def test_the_meter_refuses_valkey_whose_slowlog_it_cannot_read(
    meter: ServerMeter, redis_server: RedisServer
) -> None:
    # Valkey 8.0.1's INFO server names itself so (and keeps a redis_version for clients)
    valkey = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.1"}
    refused = unreadable_server(valkey)
    assert refused is not None
    assert "Valkey 8.0.1" in refused
    assert "BROKERKIT_REDIS_SERVER" in refused
    # the server the suite runs (a redis-server: the meter fixture made its meter)
    assert unreadable_server(meter.r.info("server")) is None
    assert unreadable_server({"redis_version": "8.2.3"}) is None
