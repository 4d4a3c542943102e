"""A URL option's refused value is quoted cut short, and a whole number of more digits
than ``int()`` converts is called what it is: ``?max_deliveries=<5,000 nines>`` was
refused quoting all 5,000 digits and saying "expected a whole number", and a 5,000
character value was quoted whole."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import InvalidOption


@pytest.mark.parametrize("option", ["max_deliveries", "maxlen"])
def test_a_whole_number_too_long_to_convert_is_named_by_its_size(option: str) -> None:
    with pytest.raises(InvalidOption) as refused:
        brokerkit.connect(f"memory://?{option}={'9' * 5000}")
    message = str(refused.value)
    assert "9" * 30 not in message, message
    assert f"{option} is a whole number of 5,000 digits" in message, message
    assert len(message) < 300


@pytest.mark.parametrize("where", ["query", "keyword"])
def test_a_long_refused_value_is_quoted_cut_short(where: str) -> None:
    value = "x" * 5000
    url, keywords = (
        ("memory://", {"maxlen": value})
        if where == "keyword"
        else (
            f"memory://?maxlen={value}",
            {},
        )
    )
    with pytest.raises(InvalidOption) as refused:
        brokerkit.connect(url, **keywords)
    message = str(refused.value)
    assert "x" * 200 not in message, message
    assert "(5,000 characters)" in message, message
    assert "maxlen=" in message and "expected a whole number" in message, message


def test_a_short_refused_value_is_quoted_whole() -> None:
    with pytest.raises(InvalidOption, match=r"max_deliveries='1\.5' is not valid"):
        brokerkit.connect("memory://?max_deliveries=1.5")
