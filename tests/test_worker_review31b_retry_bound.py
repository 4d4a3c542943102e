"""A retry policy's delay given as it is (review 31b of the worker): ``Fixed``'s
``seconds`` and ``Exponential``'s ``cap`` fall due by the end of the year 9999, as a
nack's delay must since ca64c11 (LATEST_DUE). ``Fixed(1e12)`` (milliseconds given as
seconds) was accepted when built, and every nack with it then refused: the worker
logged each retry as the policy's bug and retried at once. It is refused when built,
with InvalidOption naming the range; every delay that a nack takes is accepted."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit._schedule import LATEST_DUE
from brokerkit.worker import Exponential, Fixed, RetryPolicy
from tests.waiting import wait_until
from tests.worker_runs import WorkerLog, worker_log

__all__ = ["worker_log"]  # fixture

DEADLINE = 10.0
YEAR = 365.25 * 24 * 3600

BUILDS: dict[str, Callable[[Any], RetryPolicy]] = {
    "Fixed(seconds)": lambda v: Fixed(v),
    "Exponential(cap)": lambda v: Exponential(cap=v),
    "replace(Fixed, seconds)": lambda v: dataclasses.replace(Fixed(1), seconds=v),
    "replace(Exponential, cap)": lambda v: dataclasses.replace(Exponential(), cap=v),
}
NAMES = {
    "Fixed(seconds)": "seconds",
    "Exponential(cap)": "cap",
    "replace(Fixed, seconds)": "seconds",
    "replace(Exponential, cap)": "cap",
}


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("value", [1e12, 10**308, 8000 * YEAR], ids=["1e12", "1e308", "8000y"])
def test_a_delay_falling_due_after_the_year_9999_is_refused_when_built(
    build: str, value: float
) -> None:
    before = LATEST_DUE - time.time()
    with pytest.raises(brokerkit.InvalidOption) as raised:
        BUILDS[build](value)
    after = LATEST_DUE - time.time()
    message = str(raised.value)
    assert message.startswith(f"{NAMES[build]} must be "), message
    assert "falling due by the end of the year 9999: at most " in message, message
    most = float(message.split("at most ")[1].split(",")[0])
    assert after - 1 <= most <= before + 1, message  # the longest a nack takes now
    assert len(message) < 200, message


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("value", [0.001, 3600, 100 * YEAR, 7000 * YEAR])
def test_every_delay_a_nack_takes_is_accepted(build: str, value: float) -> None:
    policy = BUILDS[build](value)
    assert getattr(policy, NAMES[build]) == float(value)


def test_first_and_factor_are_still_any_float_the_cap_bounds_the_delay() -> None:
    policy = Exponential(first=1e300, factor=1e300, cap=YEAR, jitter=0)
    assert policy.delay(1) == policy.delay(9) == YEAR


def test_the_longest_fixed_delay_accepted_is_a_delay_the_nack_takes(worker_log: WorkerLog) -> None:
    topic = "review31b-longest-delay"
    policy = Fixed(7000 * YEAR)
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler(topic, retry=policy)
        def job(body: dict[str, int]) -> None:
            raise ConnectionError("gateway timeout")

        broker.publish(topic, {"n": 1})
        with worker.running():
            wait_until(lambda: worker.stats()[0].retried == 1, "the retry", DEADLINE)
    assert not [line for line in worker_log.lines if "could not nack" in line], worker_log.lines
    assert not [line for line in worker_log.lines if "gave the delay" in line], worker_log.lines
    (retried,) = [line for line in worker_log.lines if "retried in" in line]
    assert "retried in 2.21e+11 s" in retried, retried
