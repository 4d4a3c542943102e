"""Ctrl-C at a chosen moment, for tests of what an interrupted call leaves behind: a
SIGINT sent to the main thread once it blocks waiting (the tests that use it run in
the main thread, with Python's default SIGINT handler installed for them)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

import brokerkit
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.aio import LoopBridgeBroker
from brokerkit.exceptions import BrokerError

__all__ = [
    "Gate",
    "HeldFetch",
    "brokerkit_child",
    "gated",
    "interrupt_demo_in_its_flash_sale",
    "interrupt_when",
    "interrupted_receive",
    "watch_the_close",
]

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0

_Bridge = TypeVar("_Bridge", bound=LoopBridgeBroker)


class Gate:
    """Holds the first call that passes it (a seam in a backend's primitive, on its
    event loop) until :meth:`open`, then lets it go on, or with ``fail`` fail as a
    server's refusal would; later calls pass. :attr:`entered` is set once one waits,
    for :func:`interrupt_when`."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.entered = threading.Event()
        self._opened = threading.Event()

    def open(self) -> None:
        self._opened.set()

    async def pass_through(self) -> None:
        if self.entered.is_set():
            return
        self.entered.set()
        assert await asyncio.to_thread(self._opened.wait, GUARD)
        if self.fail:
            raise BrokerError("the server refused the call")


class HeldFetch:
    """Put before a backend's asyncio broker class in a subclass's bases: its fetch
    passes the test's :class:`Gate` (if it set one as :attr:`gate`) before it returns:
    a seam, the real fetch has run."""

    gate: Gate | None = None

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        fetched: list[AsyncDelivery] = await super()._fetch(  # type: ignore[misc]
            subscription, max_messages, timeout
        )
        if self.gate is not None:
            await self.gate.pass_through()
        return fetched


@contextmanager
def gated(bridge: _Bridge) -> Iterator[_Bridge]:
    """``bridge`` (over a broker with a :class:`Gate` seam), and on the way out its
    gate opened (if the test set one: nothing is left held) and itself closed."""
    try:
        yield bridge
    finally:
        gate = bridge.inner.gate  # type: ignore[attr-defined]
        if gate is not None:
            gate.open()
        bridge.close()


def interrupted_receive(
    broker: LoopBridgeBroker,
    publisher: brokerkit.Broker,
    interrupt_when: Callable[[threading.Event], None],
    *,
    topic: str = "jobs",
    group: str | None = None,
) -> tuple[brokerkit.Subscription, Gate]:
    """A subscription of ``broker`` (over a :class:`HeldFetch` broker) to ``topic``
    whose receive was interrupted (KeyboardInterrupt) while its fetch of "the one",
    which ``publisher`` published, is held; and the gate that holds it, still shut."""
    subscription = broker.subscribe(topic, group=group)
    publisher.publish(topic, "the one")
    gate = broker.inner.gate = Gate()  # type: ignore[attr-defined]
    interrupt_when(gate.entered)
    with pytest.raises(KeyboardInterrupt):
        subscription.receive(timeout=GUARD)
    return subscription, gate


@pytest.fixture
def interrupt_when() -> Iterator[Callable[[threading.Event], None]]:
    """``interrupt_when(entered)``: once ``entered`` is set, and the main thread (this
    test's) is blocked waiting, a SIGINT raises KeyboardInterrupt there, once, as
    Ctrl-C does.

    The signal is sent again until the handler has run: the main thread is seen in a
    condition's ``wait`` a little before it blocks in the lock beneath (C calls all,
    between which Python runs no handler), and a signal that lands in between only
    trips the flag; the wait then blocks on, deaf to it, until a second signal breaks
    it. The handler raises once for each signal this fixture means (not again for
    the repeats), as the default handler raises for each Ctrl-C."""
    assert threading.current_thread() is threading.main_thread()
    meant: list[threading.Event] = []  # one an interrupt sent, not yet raised
    stop = threading.Event()  # the test is over: send nothing more

    def handler(number: int, frame: object) -> None:
        # No lock: a repeat may land while this runs (handlers nest); pop is atomic.
        try:
            raised = meant.pop(0)
        except IndexError:
            return  # a repeat of one raised already
        raised.set()
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGINT, handler)
    threads: list[threading.Thread] = []

    def interrupt(entered: threading.Event) -> None:
        main = threading.main_thread().ident
        assert main is not None
        if not entered.wait(GUARD):
            return
        deadline = time.monotonic() + GUARD
        while not _blocked_waiting(main):  # a bounded poll: nothing to wait on
            if time.monotonic() > deadline or stop.is_set():
                return
            time.sleep(0.001)
        raised = threading.Event()
        meant.append(raised)
        while time.monotonic() < deadline and not stop.is_set():
            signal.pthread_kill(main, signal.SIGINT)
            if raised.wait(0.02):
                return

    def arm(entered: threading.Event) -> None:
        thread = threading.Thread(target=interrupt, args=(entered,), daemon=True)
        thread.start()
        threads.append(thread)

    try:
        yield arm
    finally:
        stop.set()
        try:
            for thread in threads:
                thread.join(GUARD)
        finally:
            signal.signal(signal.SIGINT, saved)


def _blocked_waiting(ident: int) -> bool:
    """Whether thread ``ident`` waits on a condition (a future's result, here)."""
    frame = sys._current_frames().get(ident)
    return frame is not None and frame.f_code is threading.Condition.wait.__code__


def watch_the_close(broker: LoopBridgeBroker) -> tuple[threading.Event, list[bool]]:
    """An event set when the bridge's close starts waiting for the acks going on, and
    the list of what each such wait returned (whether all it waited for had ended)."""
    waiting = threading.Event()
    results: list[bool] = []
    wait = broker._going_on.wait

    def watched(timeout: float) -> bool:
        waiting.set()
        results.append(wait(timeout))
        return results[-1]

    broker._going_on.wait = watched  # type: ignore[method-assign]
    return waiting, results


@contextmanager
def brokerkit_child(*argv: str, code: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """``brokerkit ARGV`` in a child process (unbuffered, 200 columns), its pipes
    closed and itself killed on the way out if still running; with ``code``, that
    Python code runs the command line instead of ``python -m brokerkit.cli``."""
    child = subprocess.Popen(
        [sys.executable, *(("-c", code) if code else ("-m", "brokerkit.cli")), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def interrupt_demo_in_its_flash_sale(
    url: str | None,
    *,
    signal_number: int = signal.SIGINT,
    code: str | None = None,
    guard: float = 60,
) -> None:
    """Run ``brokerkit demo`` on ``url`` (None: its default) in a child process (run by
    ``code``, see :func:`brokerkit_child`), send it Ctrl-C (SIGINT; or
    ``signal_number``) once its flash sale (100,000 orders) is under way, and assert it
    exits 130 having ended within ``guard`` seconds (whatever it left is for the
    caller to look at)."""
    argv = ["demo", *([url] if url else []), "--orders", "2", "--sale-orders", "100000"]
    with brokerkit_child(*argv, "--speed", "0.1", code=code) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if "Peak shaving" in line:
                break
        else:
            pytest.fail("the demo ended before the flash sale")
        child.send_signal(signal_number)
        try:
            status = child.wait(guard)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(30)
            assert child.stderr is not None
            pytest.fail(
                f"the demo had not exited {guard} s after Ctrl-C (an 'Exception ignored in' "
                "KeyboardInterrupt below means Python swallowed it: raised while a weakref "
                f"callback or finaliser ran); its stderr:\n{child.stderr.read()[-3000:]}"
            )
        assert status == 130
