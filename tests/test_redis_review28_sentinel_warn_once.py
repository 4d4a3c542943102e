"""One bad sentinel of several: a WARNING once when it goes bad and an INFO once when it
answers again, per sentinel and per broker, not one at every master lookup that asks
it. A sentinel that refused the credentials was logged at every failed lookup (each
reconnect during a failover: the log grew with the lookups), and one that was down was
never logged at all.

Real sentinels, in the URL's order: one down (nothing on its port yet), one good, one
that refuses ``sentinel_password=``. The first lookup meets the down one (a WARNING) and
is answered by the good one. The good one then forgets the master, so that every lookup
asks all three; the master drops the broker's connections before each of several
publishes, each of which looks the master up again and fails. Then the down sentinel is
started (and names the master): the next lookup finds it answering (an INFO) and the
publish goes through."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed
from tests.redis_cluster import _Sentinel
from tests.redis_server import RedisServer, wait_until

NAME = "bk28once"
PASSWORD = "s3nt-0nce-Pw"
#: Publishes that fail while no sentinel names the master.
FAILED_LOOKUPS = 3


def _sentinel(master: RedisServer, password: str) -> _Sentinel:
    sentinel = _Sentinel(NAME, master.port)
    sentinel.config.write_text(sentinel.config.read_text() + f"requirepass {password}\n")
    return sentinel


def _admin(sentinel: _Sentinel) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=sentinel.port, password=PASSWORD, socket_timeout=5)


def _wait_naming(sentinel: _Sentinel, master: RedisServer) -> None:
    admin = _admin(sentinel)

    def names_it() -> bool:
        try:
            address = admin.sentinel_get_master_addr_by_name(NAME)
        except redis.RedisError:
            return False
        return address is not None and int(address[1]) == master.port

    try:
        wait_until(names_it, 20, f"the sentinel on {sentinel.port} does not name the master")
    finally:
        admin.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, sentinel: _Sentinel, level: int) -> list[logging.LogRecord]:
        return [
            r
            for r in self.records
            if r.levelno == level and f"sentinel at 127.0.0.1:{sentinel.port} " in r.getMessage()
        ]


class _Set:
    def __init__(self) -> None:
        self.master = RedisServer()
        self.down = _sentinel(self.master, PASSWORD)
        self.good = _sentinel(self.master, PASSWORD)
        self.refusing = _sentinel(self.master, "another-Pw")

    def url(self, scheme: str) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in (self.down, self.good, self.refusing))
        return f"{scheme}://{hosts}/0?sentinel={NAME}&sentinel_password={PASSWORD}"


@pytest.fixture
def sentinels() -> Iterator[_Set]:
    made = _Set()
    with made.master:
        try:
            made.good.start()
            made.refusing.start()
            _wait_naming(made.good, made.master)
            yield made
        finally:
            for sentinel in (made.down, made.good, made.refusing):
                sentinel.stop()


def _run(api: str, url: str, prefix: str, between: list[object]) -> None:
    """Publish once; then, for each step of ``between`` (a callable, or an expected
    failure: the class), run it or publish and expect that failure; then publish."""

    def steps() -> Iterator[tuple[object, bool]]:
        for step in between:
            yield step, isinstance(step, type)

    if api == "sync":
        with brokerkit.connect(url, prefix=prefix, reconnect_timeout=0.3) as broker:
            broker.publish("t", b"x")
            for step, fails in steps():
                if fails:
                    with pytest.raises(ConnectionFailed):
                        broker.publish("t", b"x")
                else:
                    step()  # type: ignore[operator]
            broker.publish("t", b"x")
            broker.purge("t")
        return

    async def main() -> None:
        async with await brokerkit.aio.connect(url, prefix=prefix, reconnect_timeout=0.3) as b:
            await b.publish("t", b"x")
            for step, fails in steps():
                if fails:
                    with pytest.raises(ConnectionFailed):
                        await b.publish("t", b"x")
                else:
                    step()  # type: ignore[operator]
            await b.publish("t", b"x")
            await b.purge("t")

    asyncio.run(main())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", ["sync", "asyncio"])
@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_bad_sentinel_is_logged_once_bad_and_once_good_again(
    sentinels: _Set, prefix: str, scheme: str, api: str
) -> None:
    admin = _admin(sentinels.good)
    master = sentinels.master.client()
    records = _Records()
    logger = logging.getLogger("brokerkit.redis")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)

    def forget() -> None:
        admin.execute_command("SENTINEL", "REMOVE", NAME)

    def drop() -> None:
        master.execute_command("CLIENT", "KILL", "TYPE", "normal")

    def revive() -> None:
        sentinels.down.start()
        _wait_naming(sentinels.down, sentinels.master)
        drop()

    try:
        between: list[object] = [forget]
        for _ in range(FAILED_LOOKUPS):
            between += [drop, ConnectionFailed]
        between.append(revive)
        _run(api, sentinels.url(scheme), prefix, between)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
        admin.close()
        master.close()
    down_warnings = records.about(sentinels.down, logging.WARNING)
    refusing_warnings = records.about(sentinels.refusing, logging.WARNING)
    assert len(down_warnings) == 1, [r.getMessage() for r in down_warnings]
    assert len(refusing_warnings) == 1, [r.getMessage() for r in refusing_warnings]
    assert "refused the credentials" in refusing_warnings[0].getMessage()
    assert len(records.about(sentinels.down, logging.INFO)) == 1  # answers again
    assert not records.about(sentinels.refusing, logging.INFO)
    for record in records.records:
        assert PASSWORD not in record.getMessage()
        assert record.topic is None  # the logging rule's fields are there
