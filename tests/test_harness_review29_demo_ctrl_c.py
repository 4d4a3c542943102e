"""``brokerkit demo`` ends on a Ctrl-C that lands while Python runs a finaliser (review 29:
the hang of test_ctrl_c_during_the_demo_on_redis_still_removes_its_keys).

Python's default SIGINT handler raises KeyboardInterrupt in whatever Python code the
main thread runs next. When that is a weakref callback or a ``__del__`` (the garbage
collector running them, in the main thread), the exception is printed as "Exception
ignored in ..." and dropped: the Ctrl-C is lost, and the demo's flash sale goes on for
minutes. Under load that happened in about 1 run in 15 of the Ctrl-C test (its child's
stderr: ``Exception ignored in: <function WeakSet.__init__.<locals>._remove>``,
``KeyboardInterrupt``).

Here the moment is made on purpose: the child's SIGUSR1 handler collects a reference
cycle whose weakref callback sends the process SIGINT and runs on, so the handler's
KeyboardInterrupt is raised inside that callback.

The bug was the command line's: brokerkit/cli/_app.py now delivers such a lost
interrupt again (a sys.unraisablehook, while a command runs).
"""

from __future__ import annotations

import signal

import pytest

from tests.interrupting import interrupt_demo_in_its_flash_sale

pytest.importorskip("typer")

CHILD = r"""
import gc, os, signal, weakref
from brokerkit.cli import main

class Cycle:
    pass

def finaliser(ref):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, while Python runs a weakref callback
    sum(i for i in range(1000))  # (Python code: where the SIGINT handler runs)

def collect(signum, frame):
    cycle = Cycle()
    cycle.me = cycle
    refs.append(weakref.ref(cycle, finaliser))
    del cycle
    gc.collect()

refs = []
signal.signal(signal.SIGUSR1, collect)
main()
"""


def test_a_ctrl_c_raised_in_a_finaliser_still_ends_the_demo() -> None:
    # the child's SIGUSR1 handler makes the Ctrl-C land in a weakref callback
    interrupt_demo_in_its_flash_sale(None, signal_number=signal.SIGUSR1, code=CHILD, guard=15)
