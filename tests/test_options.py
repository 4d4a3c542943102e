"""Options from the query string and keywords: typed, validated, explained."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit import InvalidOption, ManualClock


def test_query_values_are_converted_to_the_field_types() -> None:
    with brokerkit.connect(
        "memory://?visibility_timeout=2.5&max_deliveries=3&maxlen=10&serializer=msgpack"
    ) as broker:
        assert broker.options.visibility_timeout == 2.5
        assert broker.options.max_deliveries == 3
        assert broker.options.serializer == "msgpack"


def test_keywords_win_over_the_query_string() -> None:
    with brokerkit.connect("memory://?max_deliveries=3", max_deliveries=5) as broker:
        assert broker.options.max_deliveries == 5


def test_unknown_option_lists_the_valid_ones_with_a_did_you_mean() -> None:
    with pytest.raises(InvalidOption) as excinfo:
        brokerkit.connect("memory://?visiblity_timeout=3")
    message = str(excinfo.value)
    assert "did you mean 'visibility_timeout'" in message
    assert "max_deliveries" in message
    assert "serializer" in message


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("visibility_timeout=soon", "expected a number"),
        ("visibility_timeout=0", "positive number"),
        ("max_deliveries=0", "1 or more"),
        ("max_deliveries=2.5", "whole number"),
        ("serializer=pickle", "valid serializers: json, msgpack"),
        ("clock=system", "cannot be given in a URL"),
    ],
)
def test_bad_values_say_what_is_valid(query: str, complaint: str) -> None:
    with pytest.raises(InvalidOption, match=complaint):
        brokerkit.connect(f"memory://?{query}")


def test_keyword_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidOption, match="expected a number"):
        brokerkit.connect("memory://", visibility_timeout=[3])
    with pytest.raises(InvalidOption, match=r"brokerkit\.Clock"):
        brokerkit.connect("memory://", clock="manual")


def test_object_options_come_by_keyword() -> None:
    clock = ManualClock()
    with brokerkit.connect("memory://", clock=clock) as broker:
        assert broker.options.clock is clock


def test_none_clears_an_optional_option() -> None:
    with brokerkit.connect("memory://?max_deliveries=none") as broker:
        assert broker.options.max_deliveries is None
