"""OpenSSL's "not TLS" errors (``WRONG_VERSION_NUMBER``, ``RECORD_LAYER_FAILURE``,
``PACKET_LENGTH_TOO_LONG``: bytes that are no TLS record) mean "a plain port" only on
a server this process never reached. From a broker that has been talking TLS with its
server they are a stream garbled on the way (a middlebox, a failover to a
misconfigured node for a moment): they were a ConfigurationError at once, ending the
broker's work for good; they are now ridden out as a lost connection
(``reconnect_timeout``), as a reset is.

A proxy garbles every TLS byte the server sends (on the broker's connections and on
the new ones it opens) until the broker has met it a few times, then forwards again."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import brokerkit
from tests.proxies import Listener, pipe
from tests.redis_tls import TLSRedisServer, require_tls_redis_server

APIS = ["sync", "asyncio"]
#: Bytes that are no TLS record (a plain Redis error reply).
GARBLED = b"-ERR garbled\r\n"
#: Garbled answers the broker meets before the stream is whole again.
GARBLED_ANSWERS = 3


class Garbler(Listener):
    """A TCP proxy to ``target`` that replaces what the server sends with
    :data:`GARBLED` while :attr:`garble` is set (counting it in :attr:`garbled`)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.garble = threading.Event()
        self.garbled = 0
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target)
        except OSError:
            client.close()
            return
        self.keep(upstream)
        self.spawn(pipe, client, upstream)
        self.spawn(pipe, upstream, client, self._garbled)

    def _garbled(self, data: bytes, first: bool) -> bytes:
        """What the server sent, or :data:`GARBLED` while :attr:`garble` is set."""
        if not self.garble.is_set():
            return data
        self.garbled += 1
        return GARBLED


@pytest.fixture(scope="module")
def tls() -> Iterator[TLSRedisServer]:
    with TLSRedisServer(require_tls_redis_server()) as server:
        yield server


def _until_garbled_enough(garbler: Garbler, finished: threading.Event | asyncio.Task[None]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if garbler.garbled >= GARBLED_ANSWERS:
            return True
        done = finished.is_set() if isinstance(finished, threading.Event) else finished.done()
        if done:
            return False
        time.sleep(0.02)  # polled, with a deadline
    return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
def test_a_garbled_stream_from_a_reached_server_is_ridden_out(
    tls: TLSRedisServer, prefix: str, api: str
) -> None:
    garbler = Garbler(("127.0.0.1", tls.port))
    url = (
        f"rediss+list://127.0.0.1:{garbler.port}/0?ssl_ca_certs={tls.files.ca}"
        "&socket_connect_timeout=10"
    )
    try:
        if api == "sync":
            with brokerkit.connect(url, prefix=prefix, reconnect_timeout=60) as broker:
                broker.publish("t", "before")  # reached, over TLS
                errors: list[BaseException] = []
                finished = threading.Event()

                def publish() -> None:
                    try:
                        broker.publish("t", "during")
                    except BaseException as exc:
                        errors.append(exc)
                    finally:
                        finished.set()

                garbler.garble.set()
                worker = threading.Thread(target=publish)
                worker.start()
                garbled = _until_garbled_enough(garbler, finished)
                garbler.garble.clear()
                worker.join(90)
                assert not errors, f"the publish failed: {errors[0]!r}"
                assert garbled
                subscription = broker.subscribe("t")
                bodies = [subscription.receive(timeout=10) for _ in range(2)]
        else:

            async def main() -> list[object]:
                async with await brokerkit.aio.connect(
                    url, prefix=prefix, reconnect_timeout=60
                ) as broker:
                    await broker.publish("t", "before")
                    garbler.garble.set()
                    publishing = asyncio.ensure_future(broker.publish("t", "during"))
                    loop = asyncio.get_running_loop()
                    garbled = await loop.run_in_executor(
                        None, _until_garbled_enough, garbler, publishing
                    )
                    garbler.garble.clear()
                    await publishing  # raises what it failed with
                    assert garbled
                    subscription = await broker.subscribe("t")
                    return [await subscription.receive(timeout=10) for _ in range(2)]

            bodies = asyncio.run(main())
        assert [getattr(d, "body", None) for d in bodies] == ["before", "during"]
    finally:
        garbler.garble.clear()
        garbler.close()
        admin = tls.client()
        for key in admin.scan_iter(f"{prefix}*"):
            admin.delete(key)
        admin.close()
