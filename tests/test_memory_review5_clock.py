"""ManualClock refuses a time it cannot be moved by (NaN, infinite, negative, not a
number) with InvalidOption, and stays where it was: a store on a NaN clock never saw a
lease run out or a delay come due again."""

from __future__ import annotations

import math

import pytest

import brokerkit
from brokerkit import InvalidOption, ManualClock

REFUSED = [math.nan, math.inf, -math.inf, -1, -0.5, True, "3", None, 10**400]


@pytest.mark.parametrize("seconds", REFUSED, ids=lambda value: repr(value)[:12])
def test_advance_refuses_what_is_not_a_finite_number_of_seconds(seconds: object) -> None:
    clock = ManualClock(5.0)
    with pytest.raises(InvalidOption) as raised:
        clock.advance(seconds)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "finite number of seconds, 0 or more" in message, message
    assert clock.now() == 5.0, "a refused advance moved the clock"


@pytest.mark.parametrize("start", [math.nan, math.inf, -math.inf, True, "0"], ids=repr)
def test_a_clock_cannot_start_at_what_is_not_a_finite_time(start: object) -> None:
    with pytest.raises(InvalidOption, match="finite number"):
        ManualClock(start)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [0, 0.0, 1, 2.5, 10**6])
def test_advance_takes_any_finite_number_of_seconds_0_or_more(seconds: float) -> None:
    clock = ManualClock(-3.0)  # only differences matter: any finite start
    clock.advance(seconds)
    assert clock.now() == -3.0 + seconds


def test_a_store_still_runs_out_leases_and_delays_after_a_refused_advance() -> None:
    clock = ManualClock()
    with brokerkit.connect("memory://", clock=clock, visibility_timeout=10) as broker:
        broker.publish("t", "leased")
        broker.publish("t", "delayed", delay=10)
        subscription = broker.subscribe("t", group="g", prefetch=1)
        first = subscription.receive(timeout=0)
        assert first is not None and first.body == "leased"
        for seconds in (math.nan, math.inf):
            with pytest.raises(InvalidOption):
                clock.advance(seconds)
        assert subscription.receive(timeout=0) is None, "something came before it was due"
        clock.advance(10)
        got = sorted(
            (d.body, d.attempt) for d in [subscription.receive(timeout=0) for _ in range(2)] if d
        )
        assert got == [("delayed", 1), ("leased", 2)]
