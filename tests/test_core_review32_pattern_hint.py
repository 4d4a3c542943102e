"""A topic written as a pattern where no pattern is taken: the refusal says which calls
read one. It told a worker handler, and publish, to "pass pattern=True", an argument
neither has."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import InvalidTopic
from brokerkit.worker import Worker

HINT = "only subscribe(..., pattern=True) and consume(..., pattern=True) read a pattern"


def test_a_worker_handler_on_a_pattern_is_told_where_patterns_go() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = Worker(broker)
        with pytest.raises(InvalidTopic) as refused:
            worker.handler("orders.*")(lambda delivery: None)
    assert HINT in str(refused.value)
    assert "pass pattern=True" not in str(refused.value)


def test_a_publish_to_a_pattern_is_told_where_patterns_go() -> None:
    with brokerkit.connect("memory://") as broker, pytest.raises(InvalidTopic) as refused:
        broker.publish("orders.*", b"x")
    assert HINT in str(refused.value)
