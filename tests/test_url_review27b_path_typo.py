"""A secret option typed into the path after a raw '&' (``/0&token=x``,
``/vh&password=x``: a '?' typed as '&') is refused at parse time, unseen, as it was
before the twenty-seventh review took paths holding a secret option (commit ed078ee);
a whole path segment ``token=x`` (an AMQP vhost's or a memory broker's name) is still
taken, and masked (where a backend or driver would echo it:
tests/test_kombu_review27b_path_echo.py)."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit import BrokerURL, InvalidURL


@pytest.mark.parametrize(
    "url",
    [
        "kombu+amqp://guest:pw@h/vh&token=Kx3q",
        "kombu+amqp://guest:pw@h/vh&password=Kx3q?heartbeat=10",
        "kombu+redis://h/0&token=Kx3q",
        "redis+stream://h/0&sentinel_password=Kx3q",
        "redis+list://h/0&token=Kx3q&prefix=x",
        "nats://h/&token=Kx3q",
        "memory://shop/x&my_secret=Kx3q",
        "memory://shop/a=1&token=Kx3q",
        "kombu+amqp://guest:pw@h/a/vh;token=Kx3q",
        "kombu+amqp://guest:pw@h/vh&x=1token=Kx3q",
    ],
)
def test_a_secret_option_after_an_amp_in_the_path_is_refused_unseen(url: str) -> None:
    with pytest.raises(InvalidURL, match="the path") as refused:
        BrokerURL.parse(url)
    text = str(refused.value)
    assert "Kx3q" not in text and "typed for '?'" in text, text
    with pytest.raises(InvalidURL):
        brokerkit.connect(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("kombu+amqp://guest:pw@h/token=Kx3q", "/token=***"),
        ("kombu+amqp://guest:pw@h/vhtoken=Kx3q", "/vhtoken=***"),
        ("memory://shop/token=Kx3q/more", "/token=***"),
        ("memory://shop/x&y/token=Kx3q", "/x%26y/token=***"),
        # an '&' percent-encoded is meant: taken, and masked
        ("kombu+amqp://guest:pw@h/vh%26token=Kx3q", "/vh%26token=***"),
    ],
)
def test_a_whole_segment_or_an_encoded_amp_is_taken_and_masked(url: str, shown: str) -> None:
    parsed = BrokerURL.parse(url)
    assert "Kx3q" in parsed.path
    assert str(parsed).endswith(shown) and "Kx3q" not in repr(parsed), str(parsed)
