"""Redis server time per message, per command: ``INFO commandstats`` deltas around
each round, on the suite's private Redis.

Redis counts every command it runs in ``INFO commandstats`` (calls and
microseconds), the commands a script runs with ``redis.call`` included; a
script's own ``EVALSHA`` (or ``FCALL``) line counts the whole script, its inner
commands with it. So the commands a round ran inside scripts are listed on their
own too (their time is part of their script's), and a round's *total* counts each
microsecond once: every command's time times the share of its calls made at top
level. Those shares come from an *attribution* round (the first round of each
step and side, normally the discarded warm-up) run with the SLOWLOG logging every
command: the SLOWLOG tells top-level commands (with their arguments, so also which
script an ``EVALSHA`` ran) from those a script ran (Redis 7 logs those too, from
the client ``?:0``).

A side marks the moment its clock starts with :func:`mark` (after a consume
round's prefill): the round's server time is counted from there.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

__all__ = [
    "WRAPPERS",
    "ServerMeter",
    "ServerTime",
    "SlowEntry",
    "active_step",
    "command_delta",
    "mark",
    "nested_share",
    "script_names",
    "slowlog",
    "summarise",
    "unreadable_server",
]

#: The meter's own client name: its commands are left out of every figure.
METER_CLIENT = "brokerkit-bench-meter"
#: Commands the meter itself sends (and nobody measured does).
_OWN = frozenset(
    {"info", "slowlog|get", "slowlog|reset", "slowlog|len", "config|set", "config|get"}
)
#: Commands whose first argument names a subcommand in INFO commandstats.
_CONTAINERS = frozenset(
    {
        "acl", "client", "cluster", "command", "config", "function", "latency", "memory",
        "module", "object", "pubsub", "script", "slowlog", "xgroup", "xinfo",
    }
)  # fmt: skip

#: Commands whose time is that of the commands they ran, which INFO commandstats counts
#: on their own too (and the SLOWLOG logs, by their client, where it never logs these):
#: a transaction's ``EXEC``.
WRAPPERS = frozenset({"exec"})

#: The meter that is measuring a round now, if any (see :func:`mark`).
_ACTIVE: list[ServerMeter] = []


def mark() -> None:
    """The measured part of the round starts now (a consume round calls this after
    its prefill): server time counts from here. Nothing happens when no meter runs."""
    if _ACTIVE:
        _ACTIVE[-1].mark()


def active_step() -> str | None:
    """The step of the round being measured, if a meter runs."""
    return _ACTIVE[-1].step if _ACTIVE else None


@dataclass(frozen=True)
class _Snapshot:
    commands: dict[str, tuple[int, int]]
    cpu_us: float
    #: this process's CPU (all its threads), in microseconds
    client_cpu_us: float = 0.0


@dataclass(frozen=True)
class ServerTime:
    """What Redis spent on one round.

    :ivar commands: command -> (calls, microseconds) during the round (a script's
        ``EVALSHA`` includes the commands it ran).
    :ivar nested: command -> the share (0..1) of its time spent inside scripts, from
        the attribution round.
    :ivar scripts: script name -> (calls, microseconds) at top level in the
        attribution round (the same in every round of the side and step).
    :ivar cpu_us: the server's main thread CPU time (user + system, network I/O
        included) during the round, in microseconds.
    :ivar client_cpu_us: the benchmark process's CPU time (user + system, every
        thread: a backend's renewals too) during the round, in microseconds: what the
        client spent beside what the server did.
    """

    messages: int
    commands: dict[str, tuple[int, int]]
    nested: dict[str, float] = field(default_factory=dict)
    scripts: dict[str, tuple[int, int]] = field(default_factory=dict)
    cpu_us: float = 0.0
    client_cpu_us: float = 0.0

    def us_per_message(self, command: str) -> float:
        return self.commands.get(command, (0, 0))[1] / max(self.messages, 1)

    def calls_per_message(self, command: str) -> float:
        return self.commands.get(command, (0, 0))[0] / max(self.messages, 1)

    @property
    def total_us(self) -> float:
        """Server time per message, each microsecond counted once (scripts whole,
        the commands inside them not again; a transaction's commands, its ``EXEC``
        not)."""
        top = sum(
            us * (1 - self.nested.get(c, 0.0))
            for c, (_, us) in self.commands.items()
            if c not in WRAPPERS
        )
        return top / max(self.messages, 1)

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_us / max(self.messages, 1)

    @property
    def client_cpu_us_per_message(self) -> float:
        return self.client_cpu_us / max(self.messages, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "total_us_per_message": round(self.total_us, 3),
            "cpu_us_per_message": round(self.cpu_us_per_message, 3),
            "client_cpu_us_per_message": round(self.client_cpu_us_per_message, 3),
            "commands": {c: {"calls": n, "usec": us} for c, (n, us) in self.commands.items()},
            "nested_share": {c: round(s, 3) for c, s in self.nested.items() if s},
            "scripts": {s: {"calls": n, "usec": us} for s, (n, us) in self.scripts.items()},
        }


def script_names() -> dict[str, str]:
    """SHA-1 -> name (``list.scripts.FETCH``) of every Lua script text defined at
    module level in :mod:`brokerkit.backends.redis`'s modules."""
    import brokerkit.backends.redis as package

    names: dict[str, str] = {}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # an optional driver missing: its scripts stay unnamed
            continue
        short = info.name.removeprefix(package.__name__ + ".")
        for attr, value in vars(module).items():
            if attr.isupper() and isinstance(value, str) and "redis.call" in value:
                names[hashlib.sha1(value.encode()).hexdigest()] = f"{short}.{attr}"
    return names


def _command_name(argv: Sequence[bytes]) -> str:
    name = argv[0].decode(errors="replace").lower()
    if name in _CONTAINERS and len(argv) > 1:
        name += "|" + argv[1].decode(errors="replace").lower()
    return name


def unreadable_server(server: dict[str, Any]) -> str | None:
    """Why the meter cannot read the server whose ``INFO server`` is ``server``, or
    None. Valkey (8.0) logs a script's own commands in the SLOWLOG under the calling
    client's address and name, where Redis 7 logs ``?:0`` and Redis 8 no address: they
    cannot be told from the client's own, and each script's time would count twice."""
    if server.get("server_name") == "valkey" or "valkey_version" in server:
        version = server.get("valkey_version", "?")
        return (
            f"the server-time meter reads Redis only: Valkey {version} logs a script's own "
            "commands in the SLOWLOG as the calling client's, so they cannot be told "
            "apart (run the benchmarks on a redis-server: BROKERKIT_REDIS_SERVER names "
            "the binary of the private one, --redis-url an existing one)"
        )
    return None


class ServerMeter:
    """Measures the server time of rounds on the Redis at ``url``.

    :raises RuntimeError: the server is one whose SLOWLOG the meter cannot read
        (:func:`unreadable_server`).
    """

    def __init__(self, url: str) -> None:
        self.r: Any = redis.Redis.from_url(url)
        refused = unreadable_server(self.r.info("server"))
        if refused is not None:
            self.r.close()
            raise RuntimeError(refused)
        self.r.client_setname(METER_CLIENT)
        self.step: str | None = None
        self._start: _Snapshot | None = None
        self._side = ("", "")
        self._saved: tuple[str, str] | None = None
        self._shares: dict[tuple[str, str], dict[str, float]] = {}
        self._scripts: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        self._names = script_names()

    def close(self) -> None:
        self.r.close()

    def snapshot(self, *, cpu_first: bool = False) -> _Snapshot:
        """The command stats and the main thread's CPU now, and this process's CPU.
        The CPU is read after the command stats (a window's start: the stats' own
        cost falls before it), or with ``cpu_first`` before them (its end: the same,
        after it)."""
        client = time.process_time() if cpu_first else 0.0
        pipe = self.r.pipeline(transaction=False)
        if cpu_first:
            pipe.info("cpu")
            pipe.info("commandstats")
            cpu, stats = pipe.execute()
        else:
            pipe.info("commandstats")
            pipe.info("cpu")
            stats, cpu = pipe.execute()
        commands = {
            key.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for key, v in stats.items()
            if key.startswith("cmdstat_")
        }
        user = cpu.get("used_cpu_user_main_thread", cpu.get("used_cpu_user", 0.0))
        system = cpu.get("used_cpu_sys_main_thread", cpu.get("used_cpu_sys", 0.0))
        if not cpu_first:
            client = time.process_time()
        return _Snapshot(commands, 1e6 * (float(user) + float(system)), 1e6 * client)

    def mark(self) -> None:
        """Count the round's server time from now (in an attribution round, the
        SLOWLOG too)."""
        if self._saved is not None:
            self.r.execute_command("SLOWLOG", "RESET")
        self._start = self.snapshot()

    def begin(self, side: str, step: str) -> None:
        """A round of ``side`` on ``step`` starts: the first one for this side and
        step with the SLOWLOG on (the attribution round)."""
        self._side = (side, step)
        self.step = step
        self._saved = self._slowlog_on() if self._side not in self._shares else None
        _ACTIVE.append(self)
        self.mark()

    def end(self, messages: int) -> ServerTime:
        """The round ended, having handled ``messages``: what the server spent on it."""
        try:
            end = self.snapshot(cpu_first=True)
        finally:
            self._deactivate()
        start = self._start
        assert start is not None
        delta = command_delta(start, end)
        scripts: dict[str, tuple[int, int]] = {}
        if self._saved is not None:
            usec, scripts = self.split_usec()
            self._slowlog_off(self._saved)
            self._saved = None
            self._shares[self._side] = {c: nested_share(usec.get(c)) for c in delta}
            self._scripts[self._side] = scripts
        nested = self._shares.get(self._side, {})
        scripts = self._scripts.get(self._side, {})
        return ServerTime(
            messages,
            delta,
            nested,
            scripts,
            end.cpu_us - start.cpu_us,
            end.client_cpu_us - start.client_cpu_us,
        )

    def abort(self) -> None:
        """The round failed: stop measuring it (the SLOWLOG back as it was)."""
        self._deactivate()
        if self._saved is not None:
            self._slowlog_off(self._saved)
            self._saved = None

    def _deactivate(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self.step = None

    def _slowlog_on(self) -> tuple[str, str]:
        old = self.r.config_get("slowlog-*")
        self.r.config_set("slowlog-log-slower-than", 0)
        self.r.config_set("slowlog-max-len", 200_000)
        self.r.execute_command("SLOWLOG", "RESET")
        return str(old["slowlog-log-slower-than"]), str(old["slowlog-max-len"])

    def _slowlog_off(self, saved: tuple[str, str]) -> None:
        self.r.config_set("slowlog-log-slower-than", saved[0])
        self.r.config_set("slowlog-max-len", saved[1])
        self.r.execute_command("SLOWLOG", "RESET")

    def split_usec(self) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
        """Per command, its microseconds at top level and inside scripts; and (calls,
        usec) per script at top level; from the SLOWLOG. A command can cost very
        differently in each place (a script's ``SORT ... STORE`` of names, the client's
        ``SORT ... GET`` of the bodies): its share inside scripts is taken by time."""
        usec: dict[str, tuple[int, int]] = {}
        scripts: dict[str, tuple[int, int]] = {}
        for entry in slowlog(self.r):
            if entry.client == METER_CLIENT:
                continue
            top, inside = usec.get(entry.command, (0, 0))
            if entry.nested:
                usec[entry.command] = (top, inside + entry.usec)
                continue
            usec[entry.command] = (top + entry.usec, inside)
            script = self.script_of(entry.argv)
            if script:
                n, us = scripts.get(script, (0, 0))
                scripts[script] = (n + 1, us + entry.usec)
        return usec, scripts

    def script_of(self, argv: Sequence[bytes]) -> str | None:
        """The script an ``EVALSHA``/``FCALL`` line runs (``None`` for another command)."""
        name = argv[0].decode(errors="replace").lower()
        if name in ("evalsha", "evalsha_ro") and len(argv) > 1:
            sha = argv[1].decode(errors="replace")
            return self._names.get(sha, f"script {sha[:8]}")
        if name in ("fcall", "fcall_ro") and len(argv) > 1:
            return "function " + argv[1].decode(errors="replace")
        if name in ("eval", "eval_ro") and len(argv) > 1:
            return self._names.get(hashlib.sha1(argv[1]).hexdigest(), "EVAL")
        return None


def command_delta(start: _Snapshot, end: _Snapshot) -> dict[str, tuple[int, int]]:
    """Per command the measured clients ran between two snapshots, (calls,
    microseconds); the meter's own commands left out."""
    delta: dict[str, tuple[int, int]] = {}
    for command, (calls, us) in end.commands.items():
        before = start.commands.get(command, (0, 0))
        if command not in _OWN and calls > before[0]:
            delta[command] = (calls - before[0], us - before[1])
    return delta


def nested_share(usec: tuple[int, int] | None) -> float:
    """The share (0..1) of a command's time spent inside scripts, from its (top-level,
    inside) microseconds; 0 for a command the SLOWLOG did not see."""
    if usec is None or sum(usec) == 0:
        return 0.0
    return usec[1] / (usec[0] + usec[1])


@dataclass(frozen=True)
class SlowEntry:
    """One SLOWLOG entry: a top-level command and how long it ran."""

    usec: int
    argv: list[bytes]
    client: str
    #: Run by a script (Redis 7 logs a script's commands too, from client ``?:0``).
    nested: bool = False

    @property
    def command(self) -> str:
        return _command_name(self.argv) if self.argv else "?"


def slowlog(r: Any, count: int = 200_000) -> list[SlowEntry]:
    """The SLOWLOG's entries, oldest first."""
    raw = r.execute_command("SLOWLOG", "GET", count)  # the unparsed reply
    entries = []
    for item in reversed(raw):
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in item[3]]
        address = item[4] if len(item) > 4 else b""
        client = item[5] if len(item) > 5 else b""
        name = client.decode(errors="replace") if isinstance(client, bytes) else str(client)
        # a script's own command: "?:0" on Redis 7, no address on Redis 8
        nested = address in (b"?:0", "?:0", b"", "")
        entries.append(SlowEntry(int(item[2]), argv, name, nested))
    return entries


def summarise(times: Sequence[ServerTime]) -> dict[str, Any] | None:
    """Medians over rounds: total and CPU per message, and per command (us and calls
    per message, and whether it ran inside scripts)."""
    if not times:
        return None
    commands = sorted({c for t in times for c in t.commands})
    nested = times[-1].nested
    per_command = {}
    for command in commands:
        per_command[command] = {
            "us": statistics.median(t.us_per_message(command) for t in times),
            "calls": statistics.median(t.calls_per_message(command) for t in times),
            "nested": nested.get(command, 0.0),
        }
    scripts = {s: us / max(n, 1) for t in times for s, (n, us) in t.scripts.items()}
    totals = [t.total_us for t in times]
    return {
        "total_us": statistics.median(totals),
        "total_min": min(totals),
        "total_max": max(totals),
        "cpu_us": statistics.median(t.cpu_us_per_message for t in times),
        "commands": per_command,
        "scripts": dict(sorted(scripts.items())),
    }
