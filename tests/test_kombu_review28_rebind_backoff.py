"""kombu+amqp: the reaper's rounds of binding again keep one channel, and back off a
(queue, exchange) pair RabbitMQ answers NOT_FOUND for.

Review 28 (09c5999) opened a channel each round (every 2 s), issued one
``queue.bind`` a live subscription and closed it; a subscription whose exchange was
gone had its bind refused every round (a channel closed and reopened, and an error
line in RabbitMQ's log every 2 s, for as long as the exchange stayed gone).

The rounds are driven here directly, on a rebinder of the test's own (the broker's
own is switched off) with a clock of the test's, against the broker's real reading
connection: what counts the channels opened and the binds issued is a thin wrapper
around the link's real channels. Real RabbitMQ; under the test's own prefix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.backends.kombu._rebind import Rebinder
from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


class _NoRounds:
    """A rebinder that never binds (the broker's own, switched off)."""

    rounds = 0

    def sweep(self, *args: Any) -> None:
        pass


class _Counted:
    """A real channel whose ``queue.bind`` calls are counted."""

    def __init__(self, channel: Any, binds: Counter[tuple[str, str]]) -> None:
        self._channel = channel
        self._binds = binds

    def queue_bind(self, queue: str, exchange: str, *args: Any, **kwargs: Any) -> Any:
        self._binds[(queue, exchange)] += 1
        return self._channel.queue_bind(queue, exchange, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


def test_rounds_reuse_one_channel_and_back_off_a_missing_exchange(
    kombu_broker: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    monkeypatch.setattr(broker, "_rebinder", _NoRounds(), raising=False)
    with broker.subscribe("kept", group="workers") as kept, broker.subscribe("gone") as gone:
        broker.publish("kept", "first")
        delivery = kept.receive(timeout=5)
        assert delivery is not None
        delivery.ack()
        assert gone.receive(timeout=0.05) is None
        delete_names({f"{prefix}|gone"}, set())  # (its queue stays, unbound)

        link = broker._reading_link
        opened: list[Any] = []
        binds: Counter[tuple[str, str]] = Counter()
        real_channel = link.channel

        def channel() -> Any:
            opened.append(None)
            return _Counted(real_channel(), binds)

        monkeypatch.setattr(link, "channel", channel)
        now = [1000.0]
        rebinder = Rebinder()
        rebinder.interval = 0.0  # (every sweep is a round: they are driven here)
        rebinder.clock = lambda: now[0]
        with broker._state_lock:
            readers = list(broker._readers)
        for _ in range(61):  # a round every 2 s, for 2 minutes
            rebinder.sweep(link, readers)
            now[0] += 2.0
        assert rebinder.rounds == 61

        missing = (f"{prefix}|gone|default", f"{prefix}|gone")
        present = (f"{prefix}|kept|workers", f"{prefix}|kept")
        assert binds[present] == 61  # (a live binding is kept every round)
        # Refused at 0 s, then tried again after 2, 4, 8, 16, 32 s (and 60 s at most).
        assert binds[missing] == 6, binds
        assert len(opened) == 1  # (one channel for every round, NOT_FOUND or not)

        # The exchange is back (a publish declares it, and binds the broker's groups):
        # the pair binds at its next try (due now: 60 s after the last, at 62 s), and
        # every round from then on.
        broker.publish("gone", "back")
        before = binds[missing]
        for _ in range(40):
            rebinder.sweep(link, readers)
            now[0] += 2.0
        assert binds[missing] - before == 40
        assert len(opened) == 1
