"""``BrokerContract.example_share``: a class runs its share of hypothesis examples, and
the shared test functions get their settings back for the next class."""

from __future__ import annotations

import pytest
from hypothesis import settings

from brokerkit.contracts import BrokerContract
from brokerkit.contracts._profiles import share_of

pytest_plugins = ["pytester"]

_SUITE = """
import uuid

import pytest

import brokerkit
from brokerkit import ManualClock
from brokerkit.contracts import BrokerContract, ManualTimeline

MADE = {}


class Counted(BrokerContract):
    @pytest.fixture
    def clock(self):
        return ManualClock()

    @pytest.fixture
    def timeline(self, clock):
        return ManualTimeline(clock)

    @pytest.fixture
    def make_broker(self, clock, request):
        url = f"memory://share-{uuid.uuid4().hex}"
        name = type(self).__name__, request.function.__name__

        def make(**options):
            MADE[name] = MADE.get(name, 0) + 1
            return brokerkit.connect(url, clock=clock, **options)

        return make


class TestAll(Counted):
    pass


class TestQuarter(Counted):
    example_share = 0.25


class TestAllAgain(Counted):
    pass


def test_zz_counts():
    def made(name):
        return MADE[name, "test_no_loss"]  # two brokers per example

    assert made("TestAll") == made("TestAllAgain") > 2 * 10, MADE
    assert made("TestQuarter") * 3 < made("TestAll"), MADE
"""


def test_a_class_runs_its_share_of_the_examples(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_share=_SUITE)
    result = pytester.runpytest_inprocess(
        "-p", "no:xdist", "-p", "no:cacheprovider", "-k", "no_loss or zz_counts"
    )
    result.assert_outcomes(passed=4)


def test_a_share_keeps_at_least_one_example() -> None:
    assert share_of(settings(max_examples=20), 0.25).max_examples == 5
    assert share_of(settings(max_examples=3), 0.01).max_examples == 1


@pytest.mark.parametrize("share", [0, -1, float("nan"), float("inf"), "half"])
def test_a_share_that_is_not_a_positive_number_is_refused(share: object) -> None:
    with pytest.raises(TypeError, match="example_share must be a positive number"):
        type("TestBad", (BrokerContract,), {"example_share": share})
