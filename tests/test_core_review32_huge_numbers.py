"""Numbers out of any sane range in subscribe, consume and ManualClock: each refused
with InvalidOption naming the option and what is valid, before anything is made on a
server. An int of more than 4,300 digits cannot be printed (Python's limit on int to
str conversion): such an argument raised a bare ValueError out of the refusal's own
repr, and a prefetch of 10**20 made a redis+stream group before Redis refused its
COUNT ("value is not an integer or out of range")."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
import brokerkit.aio
from brokerkit._clock import ManualClock
from brokerkit._error_text import value_text
from brokerkit._subscribing import MAX_PREFETCH
from brokerkit.exceptions import InvalidOption
from brokerkit.worker import Fixed, Worker

HUGE = 10**5000


@pytest.mark.parametrize(
    "prefetch",
    [HUGE, -HUGE, MAX_PREFETCH + 1, 10**20, 0],
    ids=["huge", "minus-huge", "max+1", "1e20", "zero"],
)
def test_a_prefetch_out_of_range_is_refused_with_the_range(prefetch: int) -> None:
    with (
        brokerkit.connect("memory://") as broker,
        pytest.raises(InvalidOption, match="prefetch must be a whole number from 1 to"),
    ):
        broker.subscribe("jobs", prefetch=prefetch)


def test_the_largest_prefetch_is_taken() -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("jobs", b"x")
        with broker.subscribe("jobs", prefetch=MAX_PREFETCH) as jobs:
            delivery = jobs.receive(timeout=5)
            assert delivery is not None and delivery.payload == b"x"


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda b: b.subscribe("jobs", prefetch_bytes=-HUGE), "prefetch_bytes"),
        (lambda b: list(b.consume("jobs", limit=-HUGE)), "limit"),
    ],
    ids=["prefetch_bytes", "limit"],
)
def test_an_unprintable_int_is_refused_by_its_size(
    call: Callable[[brokerkit.Broker], Any], named: str
) -> None:
    with (
        brokerkit.connect("memory://") as broker,
        pytest.raises(InvalidOption, match=named) as refused,
    ):
        call(broker)
    assert "a negative int of about 5,001 digits" in str(refused.value)


def test_a_manual_clock_refuses_an_unprintable_start() -> None:
    with pytest.raises(InvalidOption, match="an int of about 5,001 digits"):
        ManualClock(HUGE)


def test_a_huge_prefetch_makes_no_stream_group(
    redis_broker: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    broker = redis_broker("redis+stream")
    with pytest.raises(InvalidOption, match="prefetch"):
        broker.subscribe("jobs", group="workers", prefetch=10**20)
    assert list(redis_client.scan_iter(match=f"{prefix}*")) == []


@given(
    st.recursive(
        st.integers() | st.integers(min_value=10**200) | st.text() | st.binary() | st.floats(),
        lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
        max_leaves=6,
    )
)
def test_value_text_never_raises_and_stays_short(value: object) -> None:
    shown = value_text(value)
    assert isinstance(shown, str)
    assert len(shown) <= 120


@pytest.mark.parametrize(
    "value", [HUGE, -HUGE, [1, HUGE], {"a": (HUGE,)}], ids=["huge", "minus", "list", "dict"]
)
def test_value_text_shows_what_cannot_be_printed(value: object) -> None:
    shown = value_text(value)
    assert "int of about 5,001 digits" in shown or shown in ("<list>", "<dict>")


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"concurrency": 20_000}, "concurrency must be a whole number from 1 to 10,000"),
        ({"prefetch": MAX_PREFETCH}, "prefetch must be a whole number from 0 to 999,999"),
        ({"prefetch": HUGE}, "prefetch must be a whole number from 0 to 999,999, got an int"),
    ],
    ids=["concurrency", "prefetch", "huge-prefetch"],
)
def test_a_worker_refuses_counts_it_could_not_run(options: dict[str, int], shown: str) -> None:
    with brokerkit.connect("memory://") as broker:
        worker = Worker(broker)
        with pytest.raises(InvalidOption, match=shown):
            worker.handler("jobs", **options)(lambda delivery: None)
        assert worker.handlers == []


def test_a_retry_policy_refuses_an_unprintable_number() -> None:
    with pytest.raises(InvalidOption, match="an int of about 5,001 digits"):
        Fixed(HUGE)


def test_the_cli_refuses_a_concurrency_it_could_not_run(tmp_path: Path) -> None:
    (tmp_path / "huge_workers.py").write_text(
        "import brokerkit\n"
        "from brokerkit.worker import Worker\n"
        "worker = Worker(brokerkit.connect('memory://'))\n"
        "worker.handler('jobs')(lambda delivery: None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", "worker", "huge_workers:worker", "-c", "10" * 6],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2  # a usage error, naming the option (1eae623)
    assert "--concurrency: must be a whole number from 1 to 10,000" in done.stderr


def test_a_coroutine_handler_may_have_more_slots_than_threads_allow() -> None:
    async def handle(delivery: object) -> None:
        return None

    async def register() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            worker.handler("jobs", concurrency=20_000)(handle)
            with pytest.raises(InvalidOption, match="from 1 to 10,000"):
                worker.handler("other", concurrency=20_000)(lambda delivery: None)
            with pytest.raises(InvalidOption, match="from 1 to 1,000,000"):
                worker.handler("more", concurrency=1_000_001)(handle)

    asyncio.run(register())


def test_a_stream_trim_refuses_minus_an_unprintable_int(
    redis_broker: Callable[..., Any],
) -> None:
    broker = redis_broker("redis+stream")
    with pytest.raises(InvalidOption, match=r"maxlen must be .* got a negative int of about"):
        broker.trim("jobs", maxlen=-HUGE)


def test_a_memory_start_holding_an_unprintable_int_is_refused() -> None:
    with brokerkit.connect("memory://") as broker, pytest.raises(InvalidOption, match="start"):
        broker.subscribe("jobs", group="g", start=[HUGE])  # type: ignore[arg-type]
