"""redis+list: listing a hash of a topic's deliveries (a rescue's dead consumer's
fetches hash, inspect()'s ``expiry`` hash) in ``HSCAN`` steps and the server's error
replies.

Before (930353d): any error reply to a ``NOVALUES`` step (a -BUSY while a long script
ran, a failover's -TRYAGAIN or -MASTERDOWN) had the client ask without ``NOVALUES`` for
good, reading every value; a server whose ``HSCAN`` is renamed away ("unknown command")
had every listing of more than LIST_WHOLE fields raise (a rescue and inspect() of such
a topic never succeeded); and inspect() made three round trips before its script
(ZRANGE, HLEN, HKEYS) where one pipeline can carry the first two. Real private servers
(run with ``BROKERKIT_REDIS_SERVER`` naming a Redis 7.4 or later for the ``NOVALUES``
path, the system's 7.0 for the refusal), no timing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.connection import AbstractConnection

import brokerkit
from brokerkit.backends.redis._held import Reader
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis.list import RedisListBroker, rescue_reads, rescue_reads_async
from brokerkit.backends.redis.list.upkeep_calls import inspect_once
from tests.redis_server import RedisServer
from tests.test_list_review35_listing_bounds import _batches
from tests.waiting import wait_until

pytestmark = pytest.mark.redis_list

#: More fields than one HKEYS may list.
BIG = rescue_reads.LIST_WHOLE + 500
KEY = "brokerkit:{t}:fetches:C"


class _Spy(redis.Redis):
    """A client that notes the arguments of each HSCAN it sends (after ``HSCAN key``),
    and runs ``on_refused`` once when a step with ``NOVALUES`` is refused."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[Any, ...]] = []
        self.on_refused: Any = None

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] == "HSCAN":
            self.sent.append(args[2:])
        try:
            return super().execute_command(*args, **options)
        except redis.ResponseError:
            if args[0] == "HSCAN" and "NOVALUES" in args and self.on_refused is not None:
                refused, self.on_refused = self.on_refused, None
                refused()
            raise


def _fill(client: redis.Redis, key: str, fields: int) -> list[str]:
    names = [f"{i:016x}" for i in range(fields)]
    for i in range(0, fields, 500):
        client.hset(key, mapping=dict.fromkeys(names[i : i + 500], b"0" * 10))
    return names


def _takes_novalues(server: RedisServer) -> bool:
    with contextlib.closing(server.client()) as client:
        client.hset("novalues-probe", "f", "v")  # a missing key is no test of the arguments
        try:
            client.execute_command("HSCAN", "novalues-probe", 0, "NOVALUES")
        except redis.ResponseError:
            return False
        finally:
            client.delete("novalues-probe")
        return True


class _Busy:
    """A Lua script that loops (on a connection of its own, in a thread) until
    stopped: the server answers -BUSY to others once busy-reply-threshold (lua-time-limit)
    has passed."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        looping = redis.Redis(host="127.0.0.1", port=self.server.port)

        def loop() -> None:
            with contextlib.closing(looping), contextlib.suppress(redis.ResponseError):
                looping.eval("while true do end", 0)  # ends killed by SCRIPT KILL

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        wait_until(lambda: self._answer() == "busy", "the server to answer -BUSY")

    def _answer(self) -> str:
        with contextlib.closing(self.server.client()) as probe:
            try:
                probe.ping()
            except redis.ResponseError as exc:
                return "busy" if "BUSY" in str(exc) else str(exc)
            return "ready"

    def stop(self) -> None:
        if self.thread is None:
            return
        with (
            contextlib.closing(self.server.client()) as probe,
            contextlib.suppress(redis.ResponseError),
        ):
            probe.script_kill()
        wait_until(lambda: self._answer() == "ready", "the server to answer again")
        self.thread.join(20)
        self.thread = None


@pytest.fixture
def busy_server() -> Iterator[RedisServer]:
    """A private server that answers -BUSY 10 ms into a script."""
    with RedisServer(config=("--lua-time-limit", "10")) as server:
        yield server


def test_a_busy_reply_to_a_novalues_step_does_not_disable_it(busy_server: RedisServer) -> None:
    """-BUSY (a long script) to the first ``NOVALUES`` step: the listing raises it (the
    caller's retries handle it), and the next listing asks ``NOVALUES`` again (before:
    the client asked without it for good, reading every value). On a server that takes
    ``NOVALUES`` every step of the next listing asks it; on one that refuses it, only
    the first (then the refusal is known)."""
    busy = _Busy(busy_server)
    client = _Spy(host="127.0.0.1", port=busy_server.port)
    try:
        names = _fill(client, KEY, BIG)
        original = client.response_callbacks.get("HLEN")

        def hlen(response: Any, **options: Any) -> Any:  # between the HLEN and the HSCAN
            if busy.thread is None:
                busy.start()
            return original(response, **options) if original is not None else response

        client.set_response_callback("HLEN", hlen)
        with pytest.raises(redis.ResponseError, match="BUSY"):
            rescue_reads.listed(client, None, KEY, "t")
        assert client.sent and "NOVALUES" in client.sent[0]
        busy.stop()
        client.set_response_callback("HLEN", original)  # type: ignore[arg-type]
        client.sent.clear()
        assert sorted(rescue_reads.listed(client, None, KEY, "t")) == names
        assert "NOVALUES" in client.sent[0], client.sent[:3]
        if _takes_novalues(busy_server):
            assert all("NOVALUES" in step for step in client.sent), client.sent
            assert client not in rescue_reads._NO_NOVALUES
        else:
            assert client in rescue_reads._NO_NOVALUES
    finally:
        busy.stop()
        client.close()


def test_a_refusal_is_known_only_once_a_step_without_novalues_succeeds(
    busy_server: RedisServer,
) -> None:
    """A server that refuses ``NOVALUES`` (before Redis 7.4), and -BUSY to the same step
    asked again without it: the listing raises, and the next listing asks ``NOVALUES``
    first again (before: the refusal was taken for known at once)."""
    if _takes_novalues(busy_server):
        pytest.skip("the server takes NOVALUES (Redis 7.4 or later)")
    busy = _Busy(busy_server)
    client = _Spy(host="127.0.0.1", port=busy_server.port)
    try:
        names = _fill(client, KEY, BIG)
        client.on_refused = busy.start
        with pytest.raises(redis.ResponseError, match="BUSY"):
            rescue_reads.listed(client, None, KEY, "t")
        assert [("NOVALUES" in step) for step in client.sent] == [True, False]
        busy.stop()
        client.sent.clear()
        assert sorted(rescue_reads.listed(client, None, KEY, "t")) == names
        assert "NOVALUES" in client.sent[0], client.sent[:3]
        assert client in rescue_reads._NO_NOVALUES
    finally:
        busy.stop()
        client.close()


def test_a_renamed_hscan_falls_back_to_hkeys(caplog: pytest.LogCaptureFixture) -> None:
    """A server whose ``HSCAN`` is renamed away (``rename-command HSCAN ""``: "unknown
    command"): a hash of more than LIST_WHOLE fields is listed in one HKEYS, logged once
    a client, and inspect() of such a topic counts (before: each listing raised)."""
    with RedisServer(config=("--rename-command", "HSCAN", '""')) as server:
        with contextlib.closing(server.client()) as client:
            names = _fill(client, KEY, BIG)
            with caplog.at_level(logging.INFO, logger="brokerkit.redis"):
                assert sorted(rescue_reads.listed(client, None, KEY, "t")) == names
                assert sorted(rescue_reads.listed(client, None, KEY, "t")) == names
            told = [r for r in caplog.records if "HSCAN" in r.getMessage()]
            assert len(told) == 1, [r.getMessage() for r in told]
        with brokerkit.connect(server.url("redis+list"), visibility_timeout=600) as broker:
            assert isinstance(broker, RedisListBroker)
            _batches(broker, "live", BIG, 1)
            broker._client.zadd(broker._topic("t").keys.consumers, {"live": 2**50})
            assert broker.inspect("t").in_flight == BIG


def test_inspect_reads_the_consumers_and_the_listing_size_in_one_round_trip(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inspect() of a small topic: two round trips before its script (ZRANGE and HLEN
    in one pipeline, then HKEYS; before: three, at every Prometheus scrape)."""
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=600) as broker:
        assert isinstance(broker, RedisListBroker)
        broker.publish("t", b"x")
        subscription = broker.subscribe("t", consumer="live")
        assert subscription.receive(timeout=10) is not None
        plan = broker._topic("t")
        script = broker._scripts["INSPECT"]
        sends: list[int] = []
        before_script: list[int] = []
        original = AbstractConnection.send_packed_command

        def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            if threading.current_thread() is threading.main_thread():
                sends.append(1)
            original(self, *args, **kwargs)

        def run(**kwargs: Any) -> Any:
            if not before_script:
                before_script.append(len(sends))
            return script(**kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
        reply = inspect_once(broker._client, run, plan)
        monkeypatch.undo()
        assert reply[3] == 1
        assert before_script == [2], f"{before_script[0]} round trips before the script"
        subscription.close()


@pytest.mark.parametrize("via", ["sync-reader", "asyncio-client", "asyncio-reader"])
def test_a_busy_reply_leaves_novalues_on_every_path(
    busy_server: RedisServer, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-BUSY to the first ``NOVALUES`` step on a rescue's held reader and on the
    asyncio client (the script started once the listing's HLEN is answered): raised,
    and the client not taken for one whose server refuses ``NOVALUES`` (before: it
    was, for good); its next listing lists every field."""
    busy = _Busy(busy_server)
    with contextlib.closing(busy_server.client()) as filler:
        names = _fill(filler, KEY, BIG)

    started: list[bool] = []

    def busy_after_hlen(commands: tuple[tuple[Any, ...], ...]) -> None:
        if not started and [c[0] for c in commands] == ["HLEN"]:
            started.append(True)  # the first listing's only
            busy.start()

    try:
        if via == "sync-reader":
            sync_read = rescue_reads.read

            def read(client: Any, reader: Any, *commands: tuple[Any, ...]) -> list[Any]:
                replies = sync_read(client, reader, *commands)
                busy_after_hlen(commands)
                return replies

            monkeypatch.setattr(rescue_reads, "read", read)
            client = redis.Redis(host="127.0.0.1", port=busy_server.port)
            reader = Reader(client)
            try:
                with pytest.raises(redis.ResponseError, match="BUSY"):
                    rescue_reads.listed(client, reader, KEY, "t")
                busy.stop()
                assert client not in rescue_reads._NO_NOVALUES
                assert sorted(rescue_reads.listed(client, reader, KEY, "t")) == names
            finally:
                reader.close()
                client.close()
            return

        async_read = rescue_reads_async.read

        async def aread(client: Any, reader: Any, *commands: tuple[Any, ...]) -> list[Any]:
            replies = await async_read(client, reader, *commands)
            await asyncio.to_thread(busy_after_hlen, commands)
            return replies

        monkeypatch.setattr(rescue_reads_async, "read", aread)

        async def main() -> list[str]:
            aclient = aioredis.Redis(host="127.0.0.1", port=busy_server.port)
            areader = AsyncReader(aclient) if via == "asyncio-reader" else None
            try:
                with pytest.raises(redis.ResponseError, match="BUSY"):
                    await rescue_reads_async.listed(aclient, areader, KEY, "t")
                await asyncio.to_thread(busy.stop)
                assert aclient not in rescue_reads_async._NO_NOVALUES
                return await rescue_reads_async.listed(aclient, areader, KEY, "t")
            finally:
                if areader is not None:
                    await areader.close()
                await aclient.aclose()

        assert sorted(asyncio.run(asyncio.wait_for(main(), 60))) == names
    finally:
        busy.stop()
