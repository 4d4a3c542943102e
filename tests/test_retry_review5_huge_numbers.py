"""Retry policies refuse a number a float cannot hold, or anything else that is not a
valid option, with brokerkit's own InvalidOption and a short message: it names the
parameter, what was given (truncated) and what is valid."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit.worker import Exponential, Fixed, RetryPolicy

#: The longest message a refused option may have: a line, not a 400-digit number.
SHORT = 200

#: Each parameter, and how to build a policy with a given value for it.
PARAMETERS: dict[str, Any] = {
    "Fixed(seconds)": lambda v: Fixed(v),
    "Exponential(first)": lambda v: Exponential(first=v),
    "Exponential(cap)": lambda v: Exponential(cap=v),
    "Exponential(factor)": lambda v: Exponential(factor=v),
    "Exponential(jitter)": lambda v: Exponential(jitter=v),
}
NAMES = {
    "Fixed(seconds)": "seconds",
    "Exponential(first)": "first",
    "Exponential(cap)": "cap",
    "Exponential(factor)": "factor",
    "Exponential(jitter)": "jitter",
}


def _refused(parameter: str, value: Any) -> str:
    with pytest.raises(brokerkit.InvalidOption) as raised:
        PARAMETERS[parameter](value)
    return str(raised.value)


@pytest.mark.parametrize("parameter", PARAMETERS)
@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["huge", "huge-negative"])
def test_a_huge_int_is_an_invalid_option_with_a_short_message(parameter: str, value: int) -> None:
    message = _refused(parameter, value)
    assert message.startswith(f"{NAMES[parameter]} must be "), message
    assert len(message) < SHORT, message
    assert "0000000000" * 10 not in message


@given(
    parameter=st.sampled_from(sorted(PARAMETERS)),
    value=st.one_of(
        st.integers(min_value=2**1024, max_value=10**2000),
        st.integers(min_value=-(10**2000), max_value=-(2**1024)),
        st.text(min_size=300),
        st.binary(min_size=300),
        st.lists(st.integers(), min_size=100),
    ),
)
def test_any_value_out_of_range_or_of_another_type_is_refused_briefly(
    parameter: str, value: Any
) -> None:
    message = _refused(parameter, value)
    assert message.startswith(f"{NAMES[parameter]} must be "), message
    assert len(message) < SHORT, message


@given(value=st.one_of(st.text(min_size=300), st.integers(max_value=0)))
def test_max_attempts_is_refused_briefly_too(value: Any) -> None:
    with pytest.raises(brokerkit.InvalidOption) as raised:
        RetryPolicy(max_attempts=value)
    message = str(raised.value)
    assert message.startswith("max_attempts must be "), message
    assert len(message) < SHORT, message


def test_the_message_shows_the_value_given_truncated_and_what_is_valid() -> None:
    message = _refused("Exponential(jitter)", 10**400)
    assert message.startswith("jitter must be a fraction from 0 up to (not including) 1, got 1000")
    assert "..." in message
    assert _refused("Fixed(seconds)", -1) == (
        "seconds must be a non-negative number of seconds, got -1"
    )
    assert _refused("Exponential(first)", 0) == "first must be a positive number of seconds, got 0"
    assert _refused("Exponential(factor)", 0.5) == (
        "factor must be a finite number of 1 or more, got 0.5"
    )


@pytest.mark.parametrize("parameter", PARAMETERS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_infinities_and_nan_are_refused_for_every_parameter(parameter: str, value: float) -> None:
    """An infinite ``factor`` was taken (it meant "first, then cap"); it is refused now,
    as the int too large for a float it stands for is."""
    message = _refused(parameter, value)
    assert message.startswith(f"{NAMES[parameter]} must be "), message
    assert message.endswith(f", got {value!r}")


def test_the_largest_numbers_a_float_holds_are_still_accepted() -> None:
    """Where the delay is not given as it is: ``first`` and ``factor`` (review 31b: a
    delay given as it is, ``Fixed``'s ``seconds`` and ``cap``, falls due by the end of
    the year 9999, as a nack's must; see tests/test_worker_review31b_retry_bound.py)."""
    big = 10**308
    cap = 10**9  # 31 years
    policy = Exponential(first=big, factor=big, cap=cap, jitter=0)
    assert policy.delay(5) == float(cap)  # the overflow of first * factor ** 4 is capped
    assert dataclasses.replace(policy, cap=2).delay(1) == 2.0
