"""Bookkeeping under load, and what a message in flight costs in memory (issue 18).

With ``held`` deliveries (10,000 by default) held by one consumer, on redis+list
and redis+stream, in two shapes: fetched 1,000 at a time (prefetch 1,000), and one a
fetch (prefetch 1, as a consumer fed by a trickle holds them: on redis+list a batch a
delivery); the server time of each bookkeeping call, from the SLOWLOG with every
command logged (one entry per top-level command, its duration in microseconds, a
script whole):

- *renewal*: the background lease renewals, over three renewal intervals (a
  visibility timeout of 3 s renews every second); per interval and worst command;
- *extend*: ``broker.extend`` of every held delivery at once;
- *ack*: ``broker.ack`` of every held delivery at once;
- *rescue*: their consumer closed without settling them, and their leases ran
  out: redis+list's ``rescue(topic)``, and on redis+stream a consumer of the group
  fetching for a few seconds (its fetches reclaim idle entries);
- *rescue of a dead consumer* (redis+list): a process holding them, extended for
  10 minutes, killed (SIGKILL); once its heartbeat has ended, ``rescue(topic)``
  hands them back though their leases still run.

The target: no call above 5 ms of server time.

Memory: the bytes per message of 10,000 waiting messages, and of the same
messages in flight (fetched, leased, unsettled), from ``MEMORY USAGE`` of every key
of the topic (and ``used_memory`` deltas, which also count client buffers).
"""

from __future__ import annotations

import multiprocessing
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

import brokerkit
from benchmarks.servertime import METER_CLIENT, ServerMeter, slowlog
from brokerkit import Broker, Delivery
from brokerkit._url import BrokerURL
from brokerkit.backends.redis.list.options import MIN_HEARTBEAT
from brokerkit.cli._scratch import remove_keys

__all__ = ["Call", "bookkeeping", "in_flight_memory"]

#: The issue's bound on any one bookkeeping call's server time.
LIMIT_US = 5000


@dataclass(frozen=True)
class Call:
    """The server time of one bookkeeping operation on ``deliveries`` deliveries."""

    backend: str
    operation: str
    deliveries: int
    prefetch: int
    commands: int
    worst_us: int
    worst: str
    total_us: int
    note: str = ""

    @property
    def met(self) -> bool:
        return self.worst_us <= LIMIT_US

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "met": self.met, "limit_us": LIMIT_US}


class _Slowlog:
    """The SLOWLOG logging every command, for one phase at a time."""

    def __init__(self, meter: ServerMeter) -> None:
        self.meter = meter
        self.r = meter.r
        self.saved = self.r.config_get("slowlog-*")
        self.r.config_set("slowlog-log-slower-than", 0)
        self.r.config_set("slowlog-max-len", 200_000)

    def reset(self) -> None:
        self.r.execute_command("SLOWLOG", "RESET")

    def call(
        self, backend: str, operation: str, deliveries: int, prefetch: int, note: str = ""
    ) -> Call:
        """The top-level commands logged since :meth:`reset`: their worst, count and
        total (the commands scripts ran are named in the note)."""
        entries = [e for e in slowlog(self.r) if e.client != METER_CLIENT]
        top = [e for e in entries if not e.nested]
        inner: dict[str, int] = {}
        for entry in entries:
            if entry.nested:
                inner[entry.command] = inner.get(entry.command, 0) + 1
        # a hash listed outside any script (a dead consumer's batches): its steps' worst
        listing = [e for e in top if e.command.upper() in ("HKEYS", "HSCAN")]
        for command in sorted({e.command.upper() for e in listing}):
            steps = [e.usec for e in listing if e.command.upper() == command]
            said = f"listed by {len(steps)} {command}, worst {max(steps):,} us"
            note = f"{note}; {said}" if note else said
        if inner:
            ranked = sorted(inner.items(), key=lambda item: -item[1])[:4]
            listed = ", ".join(f"{n} {c.upper()}" for c, n in ranked)
            note = f"{note}; inside scripts: {listed}" if note else f"inside scripts: {listed}"
        if not top:
            return Call(
                backend, operation, deliveries, prefetch, 0, 0, "-", 0, note or "nothing ran"
            )
        worst = max(top, key=lambda e: e.usec)
        name = self.meter.script_of(worst.argv) or worst.command.upper()
        total = sum(e.usec for e in top)
        return Call(
            backend, operation, deliveries, prefetch, len(top), worst.usec, name, total, note
        )

    def close(self) -> None:
        self.r.config_set("slowlog-log-slower-than", self.saved["slowlog-log-slower-than"])
        self.r.config_set("slowlog-max-len", self.saved["slowlog-max-len"])
        self.reset()


def _publish(broker: Broker, topic: str, count: int, size: int) -> None:
    body = b"x" * size
    for start in range(0, count, 1000):
        broker.publish_many(topic, [body] * min(1000, count - start))


def _receive(subscription: Any, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    while len(got) < count:
        delivery = subscription.receive(timeout=10)
        if delivery is None:
            raise RuntimeError(f"received {len(got)} of {count} messages")
        got.append(delivery)
    return got


def _backend(url: str, scheme: str, prefix: str, **query: object) -> Broker:
    base = url.split("://", 1)[1].split("?", 1)[0]
    options = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **query}.items())
    return brokerkit.connect(f"{scheme}://{base}?{options}")


#: The shapes a consumer holds its deliveries in: fetched 1,000 at a time, and one a
#: fetch (on redis+list, a batch a delivery).
PREFETCHES = (1000, 1)


def bookkeeping(
    url: str, held: int = 10_000, size: int = 100, say: Callable[[str], None] = print
) -> list[Call]:
    """The server time of renewal, extend, ack and rescue with ``held`` deliveries held,
    in each of :data:`PREFETCHES`."""
    meter = ServerMeter(url)
    log = _Slowlog(meter)
    calls: list[Call] = []
    try:
        for scheme in ("redis+list", "redis+stream"):
            for prefetch in PREFETCHES:
                calls += _one_backend(url, scheme, held, size, prefetch, log, say)
    finally:
        log.close()
        meter.close()
    return calls


def _one_backend(
    url: str,
    scheme: str,
    held: int,
    size: int,
    prefetch: int,
    log: _Slowlog,
    say: Callable[[str], None],
) -> Iterator[Call]:
    prefix = f"bench18-{secrets.token_hex(3)}"
    group = "bench"
    topic = "settled"
    # 1. extend and ack: a broker whose first renewal is 10 s away (visibility 30 s)
    with _backend(url, scheme, prefix) as broker:
        _publish(broker, topic, held, size)
        with broker.subscribe(topic, group=group, prefetch=prefetch) as subscription:
            deliveries = _receive(subscription, held)
            say(f"  {scheme}: {held} deliveries held, prefetch {prefetch}")
            log.reset()
            broker.extend(*deliveries, seconds=60)
            yield log.call(scheme, "extend (all at once)", held, prefetch)
            log.reset()
            broker.ack(*deliveries)
            yield log.call(scheme, "ack (all at once)", held, prefetch)
    # 2. renewal: visibility 3 s, renewed every second; then the consumer goes away
    #    without settling, and its leases run out (another topic: a stream group
    #    keeps the longest lease its consumers asked for)
    topic = "abandoned"
    with _backend(url, scheme, prefix, visibility_timeout=3) as broker:
        _publish(broker, topic, held, size)
        subscription = broker.subscribe(topic, group=group, prefetch=prefetch)
        deliveries = _receive(subscription, held)
        log.reset()
        window = 3.0
        time.sleep(window)  # three renewal intervals of the background renewals
        renewal = log.call(
            scheme, f"renewal: {window:.0f} s of rounds, one a second", held, prefetch
        )
        per_second = renewal.total_us / window / 1000
        note = f"{per_second:.1f} ms of server time a second; {renewal.note}".rstrip("; ")
        yield Call(
            scheme,
            renewal.operation,
            held,
            prefetch,
            renewal.commands,
            renewal.worst_us,
            renewal.worst,
            renewal.total_us,
            note,
        )
        subscription.close()
    say(f"  {scheme}: consumer closed holding {held}; waiting for the leases to run out")
    time.sleep(3.5)  # the visibility timeout, and a little
    with _backend(url, scheme, prefix, visibility_timeout=3) as rescuer:
        if scheme == "redis+list":
            log.reset()
            moved = rescuer.rescue(topic)  # type: ignore[attr-defined]
            yield log.call(scheme, "rescue (rescue(topic))", held, prefetch, f"handed back {moved}")
        else:
            log.reset()
            got = 0
            with rescuer.subscribe(topic, group=group, prefetch=100) as subscription:
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    delivery = subscription.receive(timeout=0.5)
                    if delivery is not None:
                        delivery.ack()
                        got += 1
            yield log.call(
                scheme,
                "rescue (a consumer's fetches for 3 s)",
                held,
                prefetch,
                f"reclaimed {got} of {held} in 3 s",
            )
        rescuer.purge(topic)
    if scheme == "redis+list":
        yield _dead_consumer_rescue(url, scheme, prefix, held, size, prefetch, log, say)
    delete_prefix(url, prefix)


def _dead_consumer_rescue(
    url: str,
    scheme: str,
    prefix: str,
    held: int,
    size: int,
    prefetch: int,
    log: _Slowlog,
    say: Callable[[str], None],
) -> Call:
    """3. a process holding ``held`` deliveries, extended for 10 minutes, killed: once
    its heartbeat has ended, ``rescue(topic)``."""
    topic = "killed"
    with _backend(url, scheme, prefix) as broker:
        _publish(broker, topic, held, size)
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    holder = spawn.Process(
        target=_hold, args=(url, scheme, prefix, topic, held, prefetch, ready), daemon=True
    )
    holder.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the holding process did not receive its deliveries")
    finally:
        holder.kill()
        holder.join()
    say(f"  {scheme}: process holding {held} killed; waiting for its heartbeat to end")
    time.sleep(MIN_HEARTBEAT + 1)  # its heartbeat (the visibility timeout, at least that)
    with _backend(url, scheme, prefix, visibility_timeout=3) as rescuer:
        log.reset()
        moved = rescuer.rescue(topic)  # type: ignore[attr-defined]
        call = log.call(scheme, "rescue of a dead consumer", held, prefetch, f"handed back {moved}")
        rescuer.purge(topic)
    return call


def _hold(
    url: str, scheme: str, prefix: str, topic: str, held: int, prefetch: int, ready: Any
) -> None:
    """In a process of its own: receive ``held`` deliveries, extend them for 10
    minutes, say so, and wait to be killed."""
    broker = _backend(url, scheme, prefix, visibility_timeout=3)
    subscription = broker.subscribe(topic, prefetch=prefetch)
    deliveries = _receive(subscription, held)
    broker.extend(*deliveries, seconds=600)
    ready.set()
    signal.pause()


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key a run made under its own ``prefix`` on the Redis at ``url``
    (``redis://`` or ``rediss://``), as ``brokerkit bench`` does with its own."""
    scheme, rest = url.split("://", 1)
    remove_keys(BrokerURL.parse(f"{scheme}+list://{rest}"), prefix + ":")


def in_flight_memory(url: str, count: int = 10_000, size: int = 100) -> list[dict[str, Any]]:
    """Bytes per message of ``count`` waiting messages and of the same in flight,
    for redis+list and redis+stream and raw redis-py's list (BLMOVE to a
    processing list)."""
    r: Any = redis.Redis.from_url(url)
    rows = []
    try:
        for scheme in ("redis+list", "redis+stream"):
            prefix = f"bench18m-{secrets.token_hex(3)}"
            with _backend(url, scheme, prefix) as broker:
                base = _memory(r, prefix)
                _publish(broker, "mem", count, size)
                waiting = _memory(r, prefix)
                with broker.subscribe("mem", prefetch=1000) as subscription:
                    deliveries = _receive(subscription, count)
                    keys: dict[str, int] = {}
                    flying = _memory(r, prefix, keys)
                    broker.ack(*deliveries)
                broker.purge("mem")
            delete_prefix(url, prefix)
            row = _memory_row(scheme, count, base, waiting, flying)
            row["in_flight_by_key"] = {k: round(v / count, 1) for k, v in sorted(keys.items())}
            rows.append(row)
        key = f"bench18m-raw-{secrets.token_hex(3)}"
        base = _memory(r, key)
        body = b"x" * size
        for start in range(0, count, 1000):
            r.lpush(key, *[body] * min(1000, count - start))
        waiting = _memory(r, key)
        pipe = r.pipeline(transaction=False)
        for _ in range(count):
            pipe.lmove(key, key + ":processing", "RIGHT", "LEFT")
        pipe.execute()
        flying = _memory(r, key)
        r.delete(key, key + ":processing")
        rows.append(
            _memory_row("raw list (LMOVE to a processing list)", count, base, waiting, flying)
        )
    finally:
        r.close()
    return rows


def _memory(r: Any, prefix: str, by_key: dict[str, int] | None = None) -> tuple[int, int]:
    """(MEMORY USAGE of every key under ``prefix``, the server's used_memory); each
    key's bytes go to ``by_key`` too, under its name without the prefix and topic."""
    total = 0
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        size = int(r.memory_usage(key, samples=0) or 0)
        total += size
        if by_key is not None:
            name = key.decode() if isinstance(key, bytes) else str(key)
            kind = name.split("}", 1)[-1] if "}" in name else name.removeprefix(prefix)
            kind = kind.split(":processing:")[0] + (
                ":processing:<consumer>" if ":processing:" in kind else ""
            )
            kind = kind.split(":leases:")[0] + (":leases:<consumer>" if ":leases:" in kind else "")
            by_key[kind or "(the queue or stream)"] = size
    return total, int(r.info("memory")["used_memory"])


def _memory_row(
    side: str, count: int, base: tuple[int, int], waiting: tuple[int, int], flying: tuple[int, int]
) -> dict[str, Any]:
    keys_waiting = (waiting[0] - base[0]) / count
    keys_flying = (flying[0] - base[0]) / count
    return {
        "side": side,
        "messages": count,
        "waiting_bytes_per_message": round(keys_waiting, 1),
        "in_flight_bytes_per_message": round(keys_flying, 1),
        "extra_bytes_per_message": round(keys_flying - keys_waiting, 1),
        "used_memory_waiting": round((waiting[1] - base[1]) / count, 1),
        "used_memory_in_flight": round((flying[1] - base[1]) / count, 1),
        "met": keys_flying - keys_waiting <= 64,
    }
