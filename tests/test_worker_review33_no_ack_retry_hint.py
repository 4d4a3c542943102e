"""A retry policy with a delay, registered on a backend without ACK (kombu+memory,
redis+pubsub, nats+core), is refused with a text that does not send the user to
``Immediate()``: there a failed message is never redelivered, with or without a
policy. Before, the refusal said "use brokerkit.worker.Immediate() there", as on a
backend that retries but cannot delay (nats, kombu+amqp), where it is the fix."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import Unsupported
from brokerkit.worker import Exponential, Fixed, Immediate


@pytest.mark.parametrize("policy", [Exponential(), Fixed(2.0)], ids=["Exponential", "Fixed"])
def test_a_delay_on_a_backend_without_ack_is_refused_without_suggesting_immediate(
    policy: object,
) -> None:
    with brokerkit.connect("kombu+memory://") as broker:
        worker = brokerkit.Worker(broker)
        with pytest.raises(Unsupported) as refused:

            @worker.handler("jobs", retry=policy)  # type: ignore[arg-type]
            def job(body: object) -> None:
                pass

    text = str(refused.value)
    assert "Immediate" not in text, text
    assert "not redelivered" in text and "leave retry out" in text, text
    assert "DELAY" in text, text


def test_immediate_is_still_taken_there() -> None:
    with brokerkit.connect("kombu+memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("jobs", retry=Immediate())
        def job(body: object) -> None:
            pass

        assert [spec.name for spec in worker.handlers] == [job.__qualname__]
