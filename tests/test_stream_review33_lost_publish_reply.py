"""A redis+stream publish whose reply a dropped connection lost stores its message once,
and with ``replicas=`` its retried ``WAIT`` covers the lost attempt's write.

Before, publishes ran on the broker's main client, which redis-py resends a command on
after a lost connection (``retries=3``): an ``XADD`` whose reply was lost was sent again
and the message stored twice (so was it by brokerkit's own retry of a plain publish),
and with ``replicas=`` a ``WAIT`` whose reply was lost was sent again alone on the new
connection, which had written nothing (on Redis 7.2+ such a ``WAIT`` confirms nothing).
And a ``max_age`` publish (its ``XADD`` and trim script sent together) that lost the
trim script's reply, the ``XADD``'s read already, dropped that reply: the retry added
the message again.

Against a real redis-server (a master with a replica for ``replicas=``), reached through
a small TCP proxy of the test's own that, armed, drops the connection instead of
relaying the reply to a chosen command: the server ran the command, the client never
learns its outcome, as when a connection drops at that moment. Sync and asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import brokerkit
import brokerkit.aio
from tests.redis_server import RedisServer
from tests.replica_waits import master_with_replica

TOPIC = "orders"

#: Commands that write (a WAIT's connection must have run one before it).
_WRITES = {b"XADD", b"EVALSHA", b"EVAL"}


def _end(buf: bytes, pos: int) -> int | None:
    """The end of the RESP value at ``pos`` in ``buf``, or None if it is not whole yet."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind, head, after = buf[pos : pos + 1], buf[pos + 1 : line_end], line_end + 2
    if kind in b"+-:_,#(":
        return after
    if kind in b"$!=":
        size = int(head)
        if size < 0:
            return after
        return after + size + 2 if len(buf) >= after + size + 2 else None
    if kind in b"*~>%|":
        count = int(head) * (2 if kind in b"%|" else 1)
        for _ in range(max(count, 0)):
            got = _end(buf, after)
            if got is None:
                return None
            after = got
        return after
    raise AssertionError(f"not RESP: {buf[pos:]!r}")


def _command(raw: bytes) -> list[bytes]:
    """The parts of one command (a RESP array of bulk strings)."""
    parts, pos = [], raw.find(b"\r\n") + 2
    while pos < len(raw):
        line_end = raw.find(b"\r\n", pos)
        size = int(raw[pos + 1 : line_end])
        parts.append(raw[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2
    return parts


@dataclass
class _Link:
    """One client connection through the proxy: the commands it sent, in order."""

    commands: list[list[bytes]] = field(default_factory=list)
    waiting: list[list[bytes]] = field(default_factory=list)  # replies still to relay
    lock: threading.Lock = field(default_factory=threading.Lock)


class DropProxy:
    """A TCP proxy to ``server``; :meth:`drop_reply_to` arms it to drop, once, the
    connection whose next reply is to a command ``matches`` accepts (not relayed)."""

    def __init__(self, server: RedisServer) -> None:
        self._target = ("127.0.0.1", server.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.links: list[_Link] = []
        self.dropped = 0
        self._matches: Callable[[list[bytes]], bool] | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def drop_reply_to(self, matches: Callable[[list[bytes]], bool]) -> None:
        with self._lock:
            self._matches = matches

    def sent(self, name: bytes) -> int:
        """How many commands named ``name`` reached the server, over all links."""
        return sum(c[0].upper() == name for link in self.links for c in link.commands)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            _shut(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            link = _Link()
            self.links.append(link)
            threading.Thread(target=self._up, args=(client, upstream, link), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, link), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, link: _Link) -> None:
        buf = b""
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                _shut(upstream)
                return
            buf += data
            while buf and (end := _end(buf, 0)) is not None:
                command = _command(buf[:end])
                with link.lock:  # noted before the server can answer it
                    link.commands.append(command)
                    link.waiting.append(command)
                buf = buf[end:]
            try:
                upstream.sendall(data)
            except OSError:
                _shut(client)
                return

    def _down(self, upstream: socket.socket, client: socket.socket, link: _Link) -> None:
        buf = b""
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                data = b""
            if not data:
                _shut(client)
                return
            buf += data
            while buf and (end := _end(buf, 0)) is not None:
                with link.lock:
                    command = link.waiting.pop(0)
                with self._lock:
                    drop = self._matches is not None and self._matches(command)
                    if drop:
                        self._matches = None
                        self.dropped += 1
                if drop:
                    _shut(client)
                    _shut(upstream)
                    return
                try:
                    client.sendall(buf[:end])
                except OSError:
                    _shut(upstream)
                    return
                buf = buf[end:]


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _named(name: bytes) -> Callable[[list[bytes]], bool]:
    return lambda command: command[0].upper() == name


def _trim_script(command: list[bytes]) -> bool:
    from brokerkit.backends.redis.stream import group_scripts
    from brokerkit.backends.redis.stream.calls_async import AsyncLua

    sha = AsyncLua(None, group_scripts.TRIM_AGE).sha.encode()  # type: ignore[arg-type]
    return command[0].upper() == b"EVALSHA" and command[1] == sha


def _publish_script(command: list[bytes]) -> bool:
    from brokerkit.backends.redis.stream import scripts
    from brokerkit.backends.redis.stream.calls_async import AsyncLua

    sha = AsyncLua(None, scripts.PUBLISH).sha.encode()  # type: ignore[arg-type]
    return command[0].upper() == b"EVALSHA" and command[1] == sha


@pytest.fixture
def master() -> Iterator[RedisServer]:
    with master_with_replica() as server:
        yield server


@pytest.fixture
def plain() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def proxied() -> Iterator[Callable[[RedisServer], DropProxy]]:
    made: list[DropProxy] = []

    def make(server: RedisServer) -> DropProxy:
        made.append(DropProxy(server))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def _bodies(server: RedisServer, prefix: str) -> list[bytes]:
    client = server.client()
    try:
        return [f[b"body"] for _, f in client.xrange(f"{prefix}:{{{TOPIC}}}")]
    finally:
        client.close()


def _publish(
    proxy: DropProxy,
    query: str,
    prefix: str,
    matches: Callable[[list[bytes]], bool],
    *,
    aio: bool,
    many: int = 0,
) -> None:
    """A first publish, then, the proxy armed, a second (``many``: a batch of so many)."""
    url = proxy.url("redis+stream") + "?" + query

    def second() -> list[dict[str, int]]:
        return [{"n": i} for i in range(1, many + 1)] if many else [{"n": 1}]

    if not aio:
        with brokerkit.connect(url, prefix=prefix) as broker:
            broker.publish(TOPIC, {"n": 0})
            proxy.drop_reply_to(matches)
            if many:
                broker.publish_many(TOPIC, second())
            else:
                broker.publish(TOPIC, {"n": 1})
        return

    async def main() -> None:
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish(TOPIC, {"n": 0})
            proxy.drop_reply_to(matches)
            if many:
                await broker.publish_many(TOPIC, second())
            else:
                await broker.publish(TOPIC, {"n": 1})

    asyncio.run(asyncio.wait_for(main(), 60))


def _expected(count: int = 1) -> list[bytes]:
    return [f'{{"n":{i}}}'.encode() for i in range(count + 1)]


def _waits_after_a_write(proxy: DropProxy) -> list[bool]:
    """Per WAIT sent: whether its connection wrote since its last WAIT (or its start)."""
    found = []
    for link in proxy.links:
        wrote = False
        for command in link.commands:
            name = command[0].upper()
            if name == b"WAIT":
                found.append(wrote)
                wrote = False
            elif name in _WRITES:
                wrote = True
    return found


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
@pytest.mark.parametrize("query", ["", "maxlen=1000"])
def test_a_publish_whose_xadd_reply_was_lost_stores_its_message_once(
    plain: RedisServer,
    proxied: Callable[[RedisServer], DropProxy],
    prefix: str,
    query: str,
    aio: bool,
) -> None:
    proxy = proxied(plain)
    _publish(proxy, query, prefix, _named(b"XADD"), aio=aio)
    assert proxy.dropped == 1
    assert _bodies(plain, prefix) == _expected()


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
def test_a_max_age_publish_that_lost_the_trim_reply_counts_the_xadd_reply_it_read(
    plain: RedisServer, proxied: Callable[[RedisServer], DropProxy], prefix: str, aio: bool
) -> None:
    proxy = proxied(plain)
    _publish(proxy, "max_age=60", prefix, _trim_script, aio=aio)
    assert proxy.dropped == 1
    assert _bodies(plain, prefix) == _expected()
    # the XADD's reply, read before the connection dropped, told the retry it landed
    assert proxy.sent(b"XADD") == 2
    assert proxy.sent(b"XREVRANGE") == 0


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
@pytest.mark.parametrize("query", ["", "max_age=60", "maxlen=1000"])
def test_a_replicas_publish_whose_xadd_reply_was_lost_stores_its_message_once(
    master: RedisServer,
    proxied: Callable[[RedisServer], DropProxy],
    prefix: str,
    query: str,
    aio: bool,
) -> None:
    proxy = proxied(master)
    _publish(proxy, "replicas=1&replica_timeout=30&" + query, prefix, _named(b"XADD"), aio=aio)
    assert proxy.dropped == 1
    assert _bodies(master, prefix) == _expected()
    assert all(_waits_after_a_write(proxy))


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
@pytest.mark.parametrize("query", ["", "max_age=60"])
def test_a_wait_whose_reply_was_lost_is_sent_again_after_a_write_of_its_connection(
    master: RedisServer,
    proxied: Callable[[RedisServer], DropProxy],
    prefix: str,
    query: str,
    aio: bool,
) -> None:
    proxy = proxied(master)
    _publish(proxy, "replicas=1&replica_timeout=30&" + query, prefix, _named(b"WAIT"), aio=aio)
    assert proxy.dropped == 1
    assert _bodies(master, prefix) == _expected()
    waits = _waits_after_a_write(proxy)
    assert len(waits) == 3  # the first publish's, the lost one, the retry's
    assert all(waits)


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
@pytest.mark.parametrize("query", ["", "max_age=60", "replicas=1&replica_timeout=30"])
def test_a_batch_whose_script_reply_was_lost_stores_its_messages_once(
    master: RedisServer,
    proxied: Callable[[RedisServer], DropProxy],
    prefix: str,
    query: str,
    aio: bool,
) -> None:
    from brokerkit.backends.redis.stream import scripts

    admin = master.client()
    try:  # loaded: the reply lost is the script's, not a NOSCRIPT
        admin.script_load(scripts.PUBLISH)
    finally:
        admin.close()
    proxy = proxied(master)
    _publish(proxy, query, prefix, _publish_script, aio=aio, many=3)
    assert proxy.dropped == 1
    assert _bodies(master, prefix) == _expected(3)
    assert all(_waits_after_a_write(proxy))
