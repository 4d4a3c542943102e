"""A memory subscription's ``start`` that no store could mean (thirty-second review of
the memory backend): an offset of thousands of digits, or an int too long for Python
to print, raised a bare ValueError (``int()`` and ``repr()`` refuse past 4300 digits)
from inside subscribe, instead of the InvalidOption that every other bad ``start``
raises. An offset is now 30 digits at most (zeros before it included); an int start
is named without being printed."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import InvalidOption

BAD = {
    "an offset of 5000 digits": "9" * 5000,
    "an offset of 31 digits": "1" + "0" * 30,
    "an int of 5000 digits": 10**5000,
}


@pytest.mark.parametrize("start", list(BAD.values()), ids=list(BAD))
def test_an_offset_no_store_could_mean_is_refused_with_invalid_option(start: object) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(InvalidOption, match=r"offset written in digits \(30 at most\)"):
            broker.subscribe("review32.start", group="late", start=start)
        # nothing was made: the group starts where a good start says
        broker.publish("review32.start", "first")
        with broker.subscribe("review32.start", group="late", start="0") as subscription:
            delivery = subscription.receive(timeout=1.0)
            assert delivery is not None and delivery.body == "first"
            delivery.ack()


def test_an_offset_of_30_digits_is_taken() -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("review32.start", "before")
        with broker.subscribe("review32.start", group="far", start="9" * 30) as subscription:
            assert subscription.receive(timeout=0) is None
