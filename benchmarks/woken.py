"""How long a redis+list consumer's own Python work takes once its wake-up reply is
in: ``python -m benchmarks.woken``.

Issue 18's latency target (publish-to-receive within 100 us of raw ``BLMOVE``) is
met by little on this machine and missed in its slow hours. This splits off the
client's part: a consumer with prefetch 1 waits in ``BLMOVE``, another process
publishes a message every few milliseconds, and for each wake-up the time from the
``BLMOVE``'s reply (read alone: see :mod:`.list.woken_async`) to ``receive`` returning
the delivery is taken; then the same with the messages already waiting (the consumer
never blocks: from its fetch pipeline's reply, the FETCH script's and ``LRANGE``'s).
As each reply comes in, a fixed piece of Python (``sum(range(100))``) is timed too:
how much slower the thread runs just after it woke than when it kept running. On a
private redis-server (or ``--redis-url``: its keys under a prefix of its own, deleted
at the end).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import brokerkit
from benchmarks.bookkeeping import delete_prefix
from benchmarks.run import redis_at
from brokerkit.backends.redis import _held

__all__ = ["measure"]

_PUBLISHER = """
import sys, time, brokerkit
broker = brokerkit.connect(sys.argv[1])
for _ in range(int(sys.argv[2])):
    time.sleep(float(sys.argv[3]))
    broker.publish("woken", b"x" * 100)
broker.close()
"""


def _stamping(
    replies: list[float], fixed: list[float], method: Callable[..., Any], only: str | None
) -> Callable[..., Any]:
    """A ``Reader`` method that notes when its reply is in, and how long
    ``sum(range(100))`` takes right then: every call, or (``only``) a call of that
    command alone (``execute`` runs the settlements' scripts too)."""

    def stamped(self: Any, *commands: Any) -> Any:
        out = method(self, *commands)
        if only is None or commands[0] == only:
            started = time.perf_counter()
            sum(range(100))
            fixed.append((time.perf_counter() - started) * 1e6)
            replies.append(time.perf_counter())
        return out

    return stamped


def _receive_all(
    subscription: brokerkit.Subscription, count: int, replies: list[float], fixed: list[float]
) -> dict[str, list[float]]:
    """Receive and ack ``count`` deliveries: per one that a fetch brought, the us from
    that fetch's reply to ``receive`` returning, and the us of ``sum(range(100))`` run
    as the reply came in."""
    after_reply: list[float] = []
    fixed.clear()
    for _ in range(count):
        before = len(replies)
        delivery = subscription.receive(timeout=10)
        returned = time.perf_counter()
        if delivery is None:
            raise RuntimeError("benchmarks.woken: a message did not come within 10 s")
        if len(replies) > before:
            after_reply.append((returned - replies[-1]) * 1e6)
        delivery.ack()
    return {"after reply": after_reply, "fixed work": list(fixed)}


def measure(url: str, count: int, interval: float) -> dict[str, dict[str, float]]:
    """mode -> measure -> median us, for consumers woken by each message ("woken") and
    for one whose messages are already waiting ("waiting")."""
    prefix = f"bench-woken-{secrets.token_hex(3)}"
    broker_url = "redis+list://" + url.split("://", 1)[1]
    replies: list[float] = []
    fixed: list[float] = []
    # the woken BLMOVE's reply (execute), a fetch pipeline's (execute_many)
    stamped = {"execute": "BLMOVE", "execute_many": None}
    originals = {name: getattr(_held.Reader, name) for name in stamped}
    for name, method in originals.items():
        setattr(_held.Reader, name, _stamping(replies, fixed, method, stamped[name]))
    result: dict[str, dict[str, float]] = {}
    try:
        with brokerkit.connect(broker_url, prefix=prefix) as broker:
            subscription = broker.subscribe("woken")
            subscription.receive(timeout=0.1)  # subscribed, and waiting
            publish = (f"{broker_url}?prefix={prefix}", str(count), str(interval))
            publisher = subprocess.Popen([sys.executable, "-c", _PUBLISHER, *publish])
            try:
                got = _receive_all(subscription, count, replies, fixed)
            finally:
                try:
                    publisher.wait(30)
                except subprocess.TimeoutExpired:
                    publisher.kill()
                    publisher.wait()
            if publisher.returncode:
                raise RuntimeError(f"benchmarks.woken: the publisher exited {publisher.returncode}")
            result["woken"] = {k: statistics.median(v) for k, v in got.items()}
            broker.publish_many("woken", [b"x" * 100] * count)
            waiting = _receive_all(subscription, count, replies, fixed)
            result["waiting"] = {k: statistics.median(v) for k, v in waiting.items()}
    finally:
        for name, method in originals.items():
            setattr(_held.Reader, name, method)
        delete_prefix(url, prefix)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.woken", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--count", type=int, default=300, help="messages in each mode")
    parser.add_argument("--interval", type=float, default=0.003, help="seconds between publishes")
    args = parser.parse_args(argv)
    with redis_at(args.redis_url) as url:
        result = measure(url, args.count, args.interval)
    print("| consumer | us from the reply to receive returning | us of sum(range(100)) then |")
    print("|---|---:|---:|")
    for mode, medians in result.items():
        print(f"| {mode} | {medians['after reply']:.1f} | {medians['fixed work']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
