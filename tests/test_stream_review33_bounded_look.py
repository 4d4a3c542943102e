"""A redis+stream publish retried after a lost reply looks for its message only where
it can be, only when it may have been written, and within bounds; a pool at its cap is
waited for, not taken for a server never reached; a batch cut off after a lost reply
says the script whose reply was lost may have run.

Before: the look read the stream down from its newest entry (``XREVRANGE +``) over every
entry added since the lost attempt (an outage's publishes: unbounded); a publish that
failed on the pool's cap (``max_connections``; nothing written) looked all the same; in
a process that had not reached the server yet, a publish that found the capped pool's
only connection taken failed at once with "could not connect ... (Too many
connections)"; and a cut-off batch said the chunk whose reply was lost was "not"
stored. Against real redis-servers (the suite's), reached directly or through the TCP
proxy of test_stream_review33_lost_publish_reply (which drops a chosen reply).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream.partial import partial_batch
from brokerkit.exceptions import ConnectionFailed
from tests.redis_server import RedisServer
from tests.test_stream_review33_lost_publish_reply import DropProxy, _named

TOPIC = "orders"
#: The entries one look reads at most (landed.LOOK_ENTRIES).
LOOK_ENTRIES = 10_000


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[DropProxy]:
    made = DropProxy(server)
    yield made
    made.close()


def _looks(proxy: DropProxy) -> int:
    return proxy.sent(b"XRANGE") + proxy.sent(b"XREVRANGE")


def _key(prefix: str) -> str:
    return f"{prefix}:{{{TOPIC}}}"


def _count(server: RedisServer, prefix: str) -> int:
    client = server.client()
    try:
        return int(client.xlen(_key(prefix)))
    finally:
        client.close()


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
def test_the_look_reads_no_entry_added_after_the_lost_attempt(
    server: RedisServer, proxy: DropProxy, prefix: str, aio: bool
) -> None:
    """1,000 entries stamped a minute after the lost XADD (an outage's publishes): the
    look never reads them (before: 11 XREVRANGE pages of 100)."""
    admin = server.client()
    key = _key(prefix)

    def drop_after_others_published(command: list[bytes]) -> bool:
        if command[0].upper() != b"XADD":
            return False
        seconds, _ = admin.time()
        future = (int(seconds) + 60) * 1000
        pipe = admin.pipeline(transaction=False)
        for i in range(1000):
            pipe.xadd(key, {"body": b"x" * 100}, id=f"{future}-{i}")
        pipe.execute()
        return True

    url = proxy.url("redis+stream")
    try:
        if aio:

            async def main() -> None:
                async with brokerkit.aio.connect(url, prefix=prefix) as broker:
                    await broker.publish(TOPIC, {"n": 0})
                    proxy.drop_reply_to(drop_after_others_published)
                    await broker.publish(TOPIC, {"n": 1})

            asyncio.run(asyncio.wait_for(main(), 60))
        else:
            with brokerkit.connect(url, prefix=prefix) as broker:
                broker.publish(TOPIC, {"n": 0})
                proxy.drop_reply_to(drop_after_others_published)
                broker.publish(TOPIC, {"n": 1})
    finally:
        admin.close()
    assert proxy.dropped == 1
    assert _count(server, prefix) == 1002  # stored once
    assert _looks(proxy) == 1


def test_a_look_past_its_bounds_sends_again_with_a_warning(
    server: RedisServer, proxy: DropProxy, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """10,050 entries stamped just before the lost XADD (inside its window): the look
    stops at 10,000 entries, the message is sent again (at least once), and a WARNING
    says so, with no body."""
    admin = server.client()
    try:
        pipe = admin.pipeline(transaction=False)
        for _ in range(LOOK_ENTRIES + 50):
            pipe.xadd(_key(prefix), {"body": b"y"})
        pipe.execute()
    finally:
        admin.close()
    url = proxy.url("redis+stream")
    with (
        caplog.at_level(logging.WARNING, logger="brokerkit.redis"),
        brokerkit.connect(url, prefix=prefix) as broker,
    ):
        proxy.drop_reply_to(_named(b"XADD"))
        broker.publish(TOPIC, "secret-body")
    assert proxy.dropped == 1
    assert _count(server, prefix) == LOOK_ENTRIES + 52  # stored twice, as allowed
    assert 1 < proxy.sent(b"XRANGE") <= 20  # pages grown by the sizes seen
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sent again" in text for text in warned)
    assert not any("secret-body" in text for text in warned)


def _held_while(
    pool: Any, hold: Callable[[], Any], publish: Callable[[], None], attempts: int
) -> BaseException | None:
    """``publish()`` in a thread while the capped ``pool``'s only connection is held
    (``hold()`` takes it), given back once the thread failed to get one ``attempts``
    times; the thread's error, if any."""
    held = hold()
    asked = threading.Event()
    tries = 0
    get_connection = pool.get_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        if tries >= attempts:
            asked.set()
        return get_connection(*args, **kwargs)

    pool.get_connection = counted
    failed: list[BaseException] = []

    def run() -> None:
        try:
            publish()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while thread.is_alive() and not asked.wait(0.05) and time.monotonic() < deadline:
        pass
    pool.release(held)
    thread.join(60)
    pool.get_connection = get_connection
    return failed[0] if failed else None


@pytest.mark.parametrize("many", [False, True], ids=["publish", "publish_many"])
def test_a_publish_that_found_the_pool_full_wrote_nothing_and_does_not_look(
    server: RedisServer, prefix: str, many: bool
) -> None:
    url = f"redis+stream://127.0.0.1:{server.port}/0?max_connections=1"
    admin = server.client()
    try:
        with brokerkit.connect(url, prefix=prefix) as broker:
            broker.publish(TOPIC, "first")  # the server answered: ridden out
            admin.config_resetstat()
            pool = broker._publish_client.connection_pool  # type: ignore[attr-defined]

            def publish() -> None:
                if many:
                    broker.publish_many(TOPIC, ["a", "b"])
                else:
                    broker.publish(TOPIC, "a")

            error = _held_while(pool, pool.get_connection, publish, 3)
        stats = admin.info("commandstats")
    finally:
        admin.close()
    assert error is None
    assert _count(server, prefix) == (3 if many else 2)
    assert "cmdstat_xrevrange" not in stats
    assert "cmdstat_xrange" not in stats
    assert "cmdstat_time" not in stats


def test_a_full_pool_in_a_process_that_never_reached_the_server_is_waited_for(
    server: RedisServer, prefix: str
) -> None:
    """The capped pool's only connection is taken (not yet connected: nothing reached
    the server) when a publish asks for one: it waits, as for a lost connection, and is
    stored once the connection is given back (before: "could not connect ... (Too many
    connections)" at once)."""
    url = f"redis+stream://127.0.0.1:{server.port}/0?max_connections=1"
    with brokerkit.connect(url, prefix=prefix) as broker:
        pool = broker._publish_client.connection_pool  # type: ignore[attr-defined]

        def hold() -> Any:
            taken = pool.make_connection()  # counted against the cap, not connected
            pool._in_use_connections.add(taken)
            return taken

        error = _held_while(pool, hold, lambda: broker.publish(TOPIC, "a"), 2)
    assert error is None, error
    assert _count(server, prefix) == 1


def test_a_batch_cut_off_after_a_lost_reply_says_that_chunk_may_have_run() -> None:
    error = partial_batch(ConnectionFailed("lost"), TOPIC, 100, 250, False, maybe=100)
    text = str(error)
    assert "stored the first 100 of 250" in text
    assert "perhaps the next 100 (its reply was lost)" in text
    assert "not the other 50" in text
    assert isinstance(error, ConnectionFailed)
