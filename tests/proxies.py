"""TCP stand-ins for a network between a client and a test server: a listener that
hands each connection to a handler thread, :func:`pipe`, which forwards one direction
of a proxied connection, :class:`Recording`, a proxy that records what clients send,
and :class:`BlackHole`, a proxy that can stop forwarding while it keeps every
connection open (as a network cut or a firewall that drops packets does: nothing
closes the connection, so only the client's own bounds can end a wait on it)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["BlackHole", "Listener", "Recording", "pipe"]


def pipe(
    source: socket.socket,
    sink: socket.socket,
    passing: Callable[[bytes, bool], bytes] | None = None,
) -> None:
    """Forward what ``source`` sends to ``sink`` until either end closes, then shut both
    down. ``passing(data, first)``, if given, sees each chunk (``first``: the
    connection's first) and returns what is forwarded; it may wait."""
    try:
        first = True
        while data := source.recv(65536):
            if passing is not None:
                data = passing(data, first)
            first = False
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Listener:
    """Accepts TCP connections on 127.0.0.1 (:attr:`port`, a free one) in a thread of
    its own and hands each to :meth:`serve`; :meth:`close` closes every socket and
    joins every thread."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.spawn(self._accept)

    def serve(self, client: socket.socket) -> None:
        """Take on an accepted connection (in the accepting thread: hand long work to
        :meth:`spawn`)."""
        raise NotImplementedError

    def keep(self, *sockets: socket.socket | None) -> None:
        """Close these sockets on :meth:`close`."""
        self._sockets += [s for s in sockets if s is not None]

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                # (polled: closing the socket would not end an accept() under way)
                if not select.select([self._server], [], [], 0.05)[0]:
                    continue
                client, _ = self._server.accept()
            except OSError:
                return
            self.keep(client)
            self.serve(client)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(10)


class Recording(Listener):
    """A TCP proxy to ``target`` that records what clients send (before forwarding it)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._sent = bytearray()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(pipe, client, upstream, self._record)
        self.spawn(pipe, upstream, client)

    def _record(self, data: bytes, first: bool) -> bytes:
        with self._lock:
            self._sent += data
        return data

    def sent(self) -> bytes:
        """Everything the clients have sent so far, in the order sent."""
        with self._lock:
            return bytes(self._sent)


class BlackHole(Listener):
    """A TCP proxy to ``target`` that can be frozen (:attr:`frozen`): it then forwards
    nothing either way, swallows what the clients send (counting it in
    :attr:`swallowed`) and keeps every connection, old and new, open."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.frozen = threading.Event()
        self.swallowed = 0
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = None if self.frozen.is_set() else socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(self._pipe, client, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket | None) -> None:
        try:
            while not self._closed.is_set():
                quiet = self.frozen.is_set() or upstream is None
                watched = [client] if quiet or upstream is None else [client, upstream]
                readable, _, _ = select.select(watched, [], [], 0.05)
                # (read after the wait: what came during it is not forwarded once frozen)
                frozen = self.frozen.is_set() or upstream is None
                for sock in readable:
                    if frozen and sock is not client:
                        continue  # the server's answer stays where it is
                    data = sock.recv(65536)
                    if not data:
                        return
                    if frozen:
                        self.swallowed += len(data)
                    elif upstream is not None:
                        (upstream if sock is client else client).sendall(data)
        except OSError:
            pass  # closed under it
        finally:
            for end in (client, upstream):
                if end is not None:
                    end.close()
