"""A delivery of a backend without ACK (redis+pubsub) that the application lets go
unsettled ends its hooks ``"unsettled"``, but never from inside the garbage collector:
a collection may run in any thread at any allocation, including one where that thread
holds a plugin's own lock (prometheus_client's ``labels()`` makes a new series under a
plain Lock), and a plugin called from there would wait on its own lock for ever. The
collector only queues the end; a background thread (or the next delivery's start, a
settlement, the close) calls the plugins. Each deadlock case runs in a subprocess with
a timeout, so that a hang fails the test instead of hanging the suite."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import brokerkit
from brokerkit._hooks import RELAY
from tests.conftest import RedisTarget, registered
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0

# Shared by the scripts: a broker of redis+pubsub on the test's server, and a delivery
# dropped in a reference cycle (only the cyclic collector takes it) next to one to ack.
_PRELUDE = """
import gc, sys, threading, uuid
import brokerkit
broker = brokerkit.connect(sys.argv[1], prefix="core33-" + uuid.uuid4().hex[:10])

def two_received():
    topic = "t-" + uuid.uuid4().hex[:8]  # new labels: a new series at the ack's end
    sub = broker.subscribe(topic)
    assert sub.receive(timeout=0) is None  # live on the server
    broker.publish_many(topic, [b"dropped", b"acked"])
    dropped, acked = sub.receive(timeout=10), sub.receive(timeout=10)
    assert dropped is not None and acked is not None
    box = [dropped]
    del dropped
    gc.collect()  # nothing else to collect: the next collection takes the cycle
    cycle = [box.pop()]
    cycle.append(cycle)
    return sub, acked

def ack_in_thread(acked, threshold=None):
    def ack():
        if threshold is not None:
            gc.set_threshold(threshold)
        try:
            broker.ack(acked)
        finally:
            gc.set_threshold(700)
    thread = threading.Thread(target=ack, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        print("the ack's thread hangs", flush=True)
        import os; os._exit(3)
"""

_OWN_LOCK = """
class Locking:
    '''Ends under its own lock, where a collection happens (as at any allocation).'''
    def __init__(self):
        self.lock = threading.Lock()
        self.ended = []
    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery):
        pass
    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery, outcome):
        with self.lock:
            gc.collect()
            self.ended.append((delivery.body, outcome))

plugin = Locking()
brokerkit.get_plugin_manager().register(plugin)
gc.disable()
sub, acked = two_received()
ack_in_thread(acked)
sub.close()  # ends what is left, once
gc.enable()
assert sorted(plugin.ended) == [(b"acked", "ack"), (b"dropped", "unsettled")], plugin.ended
broker.close()
print("done", flush=True)
"""

_PROMETHEUS = """
from prometheus_client import CollectorRegistry
from brokerkit.instrumentation.prometheus import BrokerkitMetrics

metrics = BrokerkitMetrics(registry=CollectorRegistry())
brokerkit.get_plugin_manager().register(metrics)
# No patching: a low collection threshold in the acking thread makes the collection
# fall, for some threshold, at an allocation inside labels() under its Lock.
for threshold in range(1, 160):
    sub, acked = two_received()
    ack_in_thread(acked, threshold)
    sub.close()
broker.close()
print("done", flush=True)
"""


def _run(script: str, redis_target: RedisTarget) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(_PRELUDE) + script,
                redis_target.url("redis+pubsub"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the failure itself
        pytest.fail(f"the script hangs: {exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0 and done.stdout.strip().endswith("done"), (
        done.returncode,
        done.stdout,
        done.stderr[-3000:],
    )


def test_a_collection_under_a_plugins_own_lock_does_not_hang(redis_target: RedisTarget) -> None:
    _run(_OWN_LOCK, redis_target)


def test_a_collection_inside_prometheus_labels_does_not_hang(redis_target: RedisTarget) -> None:
    pytest.importorskip("prometheus_client")
    _run(_PROMETHEUS, redis_target)


class Ends:
    def __init__(self) -> None:
        self.ended: list[tuple[Any, str]] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        pass

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self.ended.append((delivery.body, outcome))


@pytest.fixture
def ends() -> Iterator[Ends]:
    yield from registered(Ends())


def test_an_idle_subscribers_dropped_delivery_ends_with_nothing_else_called(
    ends: Ends, redis_broker: Any
) -> None:
    """No later receive, settlement or close: the end comes all the same."""
    broker = redis_broker("redis+pubsub")
    topic = f"core33-{uuid.uuid4().hex[:10]}"
    subscription = broker.subscribe(topic)
    assert subscription.receive(timeout=0) is None
    broker.publish(topic, 0)
    delivery = subscription.receive(timeout=WAIT)
    assert delivery is not None
    cycle = [delivery]
    cycle.append(cycle)
    del delivery, cycle
    gc.collect()
    wait_until(lambda: ends.ended == [(0, "unsettled")], "the dropped delivery's end")
    subscription.close()
    assert ends.ended == [(0, "unsettled")]


def test_the_flags_fall_once_the_last_dropped_delivery_has_ended(redis_broker: Any) -> None:
    """A plugin unregistered while a delivery it started is open: once the application
    drops that one and its end is called, the call sites' flags fall again, without
    waiting for another delivery or settlement."""
    broker = redis_broker("redis+pubsub")
    topic = f"core33-{uuid.uuid4().hex[:10]}"
    plugin = Ends()
    manager = brokerkit.get_plugin_manager()
    manager.register(plugin)
    try:
        subscription = broker.subscribe(topic)
        assert subscription.receive(timeout=0) is None
        broker.publish(topic, 0)
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None
    finally:
        manager.unregister(plugin)
    if any(
        name in RELAY._implemented for name in ("brokerkit_deliver_start", "brokerkit_deliver_end")
    ):
        pytest.skip("another plugin implements the delivery hooks in this process")
    assert RELAY.deliver  # held set by the open delivery
    del delivery
    gc.collect()
    wait_until(lambda: not RELAY.deliver and not RELAY.settle, "the flags to fall")
    assert plugin.ended == [(0, "unsettled")]
    subscription.close()


def test_the_next_start_or_settlement_comes_after_the_dropped_deliveries_end(
    ends: Ends, redis_broker: Any
) -> None:
    """Whichever thread makes a queued end, the next delivery's start and the next
    settlement wait for it."""
    broker = redis_broker("redis+pubsub")
    topic = f"core33-{uuid.uuid4().hex[:10]}"
    with broker.subscribe(topic) as subscription:
        assert subscription.receive(timeout=0) is None
        broker.publish_many(topic, [0, 1, 2])
        dropped = subscription.receive(timeout=WAIT)
        assert dropped is not None
        del dropped
        gc.collect()
        kept = subscription.receive(timeout=WAIT)
        assert kept is not None
        assert ends.ended == [(0, "unsettled")]
        dropped = subscription.receive(timeout=WAIT)
        assert dropped is not None
        del dropped
        gc.collect()
        kept.ack()
        assert ends.ended == [(0, "unsettled"), (2, "unsettled"), (1, "ack")]
