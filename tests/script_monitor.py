"""What Lua scripts run on a Redis server, seen through ``MONITOR``: tests count the
commands a script call ran (bounded work a call) rather than time it."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import redis

__all__ = ["ScriptMonitor"]


class ScriptMonitor:
    """While open (a context manager), the commands scripts ran on ``client``'s server.

    ``calls`` holds one list a script call (a script's commands come one after the
    other, nothing between them), ``commands`` all of them in order; each command is
    ``(NAME, *arguments)``, only the first ``arguments`` of them when given (MONITOR's
    line split at spaces)."""

    def __init__(self, client: redis.Redis, arguments: int | None = None) -> None:
        self._client = client
        self._arguments = arguments
        self._done = f"ECHO script-monitor-done-{secrets.token_hex(4)}"
        self.calls: list[list[tuple[str, ...]]] = []

    @property
    def commands(self) -> list[tuple[str, ...]]:
        return [command for call in self.calls for command in call]

    def __enter__(self) -> ScriptMonitor:
        self._monitor: Any = self._client.monitor().__enter__()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        apart = True
        while True:
            command = self._monitor.next_command()
            if command["command"] == self._done:
                return
            if command.get("client_type") != "lua":
                apart = True
                continue
            if apart:
                self.calls.append([])
                apart = False
            name, *rest = command["command"].split(" ")
            kept = rest if self._arguments is None else rest[: self._arguments]
            self.calls[-1].append((name.upper(), *kept))

    def __exit__(self, *exc: object) -> None:
        self._client.echo(self._done.split(" ", 1)[1])
        self._reader.join(timeout=120)
        assert not self._reader.is_alive()
        self._monitor.__exit__(None, None, None)
