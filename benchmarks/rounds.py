"""Interleaved rounds: every side of a comparison measured in turn, step by step.

On a shared machine throughput swings from one second to the next, so figures
measured minutes apart cannot be compared. :func:`interleave` runs, for each
step, a warm-up round and then ``rounds`` measured rounds; in each round every
side runs once, in an order that reverses from one round to the next (A B C, then
C B A: each pair of sides is measured back to back, and neither always goes
first). Each side thus has one measurement per round, and a ratio can be taken
within each round, between figures measured a second apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.servertime import ServerMeter, ServerTime
from brokerkit.cli._bench import Measurement

__all__ = ["Run", "Side", "interleave"]


@dataclass
class Side:
    """One contender: ``run(step)`` measures one round of ``step``.

    :ivar steps: the steps this side measures (default: all).
    """

    name: str
    run: Callable[[str], Measurement]
    close: Callable[[], None]
    steps: frozenset[str] | None = None


@dataclass
class Run:
    """What :func:`interleave` measured.

    :ivar rounds: side -> step -> one measurement per measured round, in round
        order (the warm-up round left out); the same round index is the same
        round for every side.
    :ivar skipped: side -> why it was not measured (it failed, and was dropped).
    :ivar server: side -> step -> the Redis server time of each measured round
        (when a meter was given), aligned with :attr:`rounds`.
    """

    rounds: dict[str, dict[str, list[Measurement]]] = field(default_factory=dict)
    server: dict[str, dict[str, list[ServerTime]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def interleave(
    sides: Sequence[Side],
    steps: Sequence[str],
    *,
    rounds: int,
    warmup: int = 1,
    say: Callable[[str], None] = _say,
    meter: ServerMeter | None = None,
) -> Run:
    """Measure every side on every step in alternating rounds.

    A side that raises is reported, dropped from the rest of the run and listed
    in :attr:`Run.skipped` (its measurements are discarded so that every kept
    side has a measurement in every round). Every side is closed at the end.

    With a ``meter``, the Redis server time of every round is measured too
    (:mod:`benchmarks.servertime`); the first round of each step and side, the
    warm-up unless there is none, is its attribution round.
    """
    result = Run()
    live = list(sides)
    try:
        for step in steps:
            playing = [s for s in live if s.steps is None or step in s.steps]
            if not playing:
                continue
            names = ", ".join(s.name for s in playing)
            say(f"{step}: {warmup} warm-up + {rounds} rounds of {names}")
            began = time.perf_counter()
            for index in range(warmup + rounds):
                order = playing if index % 2 == 0 else playing[::-1]
                for side in order:
                    if side.name in result.skipped:
                        continue
                    try:
                        if meter is not None:
                            meter.begin(side.name, step)
                        measured = side.run(step)
                        server = None if meter is None else meter.end(measured.messages)
                    except Exception as exc:  # one broken side must not sink the run
                        if meter is not None:
                            meter.abort()
                        result.skipped[side.name] = f"{step} failed: {type(exc).__name__}: {exc}"
                        result.rounds.pop(side.name, None)
                        result.server.pop(side.name, None)
                        say(f"  {side.name} dropped: {result.skipped[side.name]}")
                        continue
                    if index >= warmup:
                        result.rounds.setdefault(side.name, {}).setdefault(step, []).append(
                            measured
                        )
                        if server is not None:
                            result.server.setdefault(side.name, {}).setdefault(step, []).append(
                                server
                            )
            say(f"  {step} took {time.perf_counter() - began:.1f} s")
            live = [s for s in live if s.name not in result.skipped]
    finally:
        for side in sides:
            try:
                side.close()
            except Exception as exc:  # closing is best effort
                say(f"  closing {side.name}: {exc}")
    return result
