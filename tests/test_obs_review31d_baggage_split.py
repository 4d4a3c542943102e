"""The baggage filter splits a header as OpenTelemetry's propagator does
(``re.split(r"[ \\t]*,[ \\t]*")``), without that pattern's retries: a property over
headers of spaces, tabs, commas and member text that the split is the same. (How long
the split takes is measured, not asserted: see the closing note of review 31.)"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from brokerkit.instrumentation.opentelemetry import _baggage_members

_OTEL_DELIMITER = re.compile(r"[ \t]*,[ \t]*")


@given(st.text(alphabet=" \t,a=;%", max_size=60))
def test_the_split_is_opentelemetrys(header: str) -> None:
    assert _baggage_members(header) == _OTEL_DELIMITER.split(header)
