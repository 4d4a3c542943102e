"""One sentinel of a URL's several that is misconfigured (a TLS certificate this client
does not trust, or a password other than sentinel_password=) while another answers:
when the master is not up (a failover under way), redis-py raises MasterNotFoundError
with that one sentinel's failure in it. That was a ConfigurationError (or a credential
refusal), never retried, so every failover ended every publisher and consumer; it is
now a WARNING naming the sentinel, and the wait for a master goes on. Only when every
host of the URL fails so is it an error at once (tests/test_redis_review27_tls_sentinel.py).

Real TLS sentinels: the good one forgets the master (SENTINEL REMOVE) and the master
drops the broker's connections, so that the next command asks the sentinels and finds
no master; once the WARNING is logged, the good sentinel monitors the master again and
the publish goes through."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import brokerkit
import brokerkit.aio
from tests.redis_tls import TLSRedisServer, TLSSentinel, make_certificates, require_tls_redis_server

NAME = "bk27b"
PASSWORD = "s3nt-27b-Pw"


class _Set:
    def __init__(self, master: TLSRedisServer, good: TLSSentinel, bad: dict[str, TLSSentinel]):
        self.master, self.good, self.bad = master, good, bad


@pytest.fixture(scope="module")
def sentinels() -> Iterator[_Set]:
    with (
        TLSRedisServer(require_tls_redis_server()) as master,
        tempfile.TemporaryDirectory() as other,
    ):
        untrusted = make_certificates(Path(other))  # from a CA the client does not trust
        with (
            TLSSentinel(master, NAME, password=PASSWORD) as good,
            TLSSentinel(master, NAME, password=PASSWORD, files=untrusted) as bad_tls,
            TLSSentinel(master, NAME, password="another-Pw") as bad_password,
        ):
            yield _Set(master, good, {"tls": bad_tls, "credentials": bad_password})


class _Warned(logging.Handler):
    """Sets ``event`` on a WARNING that names ``where``."""

    def __init__(self, where: str, event: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.where, self.event = where, event
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.where in record.getMessage():
            self.records.append(record)
            self.event.set()


def _publish(
    api: str, url: str, prefix: str, started: threading.Event, go: threading.Event
) -> None:
    """Publish once, set ``started``, then (once ``go`` is set) publish once more."""
    if api == "sync":
        with brokerkit.connect(url, prefix=prefix, reconnect_timeout=60) as broker:
            broker.publish("t", b"before")
            started.set()
            assert go.wait(30)
            broker.publish("t", b"during")
        return

    async def main() -> None:
        async with await brokerkit.aio.connect(url, prefix=prefix, reconnect_timeout=60) as b:
            await b.publish("t", b"before")
            started.set()
            assert go.wait(30)  # (the event loop runs nothing else meanwhile)
            await b.publish("t", b"during")

    asyncio.run(main())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["sync", "asyncio"])
@pytest.mark.parametrize("scheme", ["rediss+stream", "rediss+list"])
@pytest.mark.parametrize("bad", ["tls", "credentials"])
def test_one_misconfigured_sentinel_does_not_end_a_failover(
    sentinels: _Set, prefix: str, scheme: str, api: str, bad: str
) -> None:
    good, wrong = sentinels.good, sentinels.bad[bad]
    ca = sentinels.master.files.ca
    url = (
        f"{scheme}://127.0.0.1:{good.port},127.0.0.1:{wrong.port}/0?sentinel={NAME}"
        f"&ssl_ca_certs={ca}&sentinel_password={PASSWORD}"
    )
    admin = redis.Redis(
        host="127.0.0.1", port=good.port, ssl=True, ssl_ca_certs=str(ca), password=PASSWORD
    )
    master = sentinels.master.client()
    progress = threading.Event()  # the WARNING was logged, or the publisher ended
    warned = _Warned(f"127.0.0.1:{wrong.port}", progress)
    logger = logging.getLogger("brokerkit.redis")
    logger.addHandler(warned)
    started, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def publisher() -> None:
        try:
            _publish(api, url, prefix, started, go)
        except BaseException as error:  # reported by the test
            errors.append(error)
        finally:
            started.set()
            progress.set()

    thread = threading.Thread(target=publisher)
    removed = False
    try:
        # connected and published once, through the good sentinel, before it forgets
        thread.start()
        assert started.wait(30)
        assert not errors, errors
        admin.execute_command("SENTINEL", "REMOVE", NAME)
        removed = True
        master.execute_command("CLIENT", "KILL", "TYPE", "normal")
        go.set()
        assert progress.wait(30)
        assert not errors, repr(errors[0]) if errors else ""  # before: ConfigurationError
        assert warned.records, "no WARNING named the sentinel"
        record = warned.records[0]
        assert record.levelno == logging.WARNING
        assert record.topic is None  # the logging rule's fields are there
        assert PASSWORD not in record.getMessage()
    finally:
        go.set()
        if removed:
            admin.execute_command(
                "SENTINEL", "MONITOR", NAME, "127.0.0.1", sentinels.master.port, 1
            )
        thread.join(50)
        logger.removeHandler(warned)
        admin.close()
        master.close()
    assert not thread.is_alive()
    assert not errors, repr(errors[0]) if errors else ""  # the publish went through
