"""A consumer process that a poison message kills, and the supervisor that restarts it:
for the redis+list and redis+stream poison-message tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time

#: A worker process: handles each message (prints its id and attempt, acks it) and
#: SIGKILLs itself when handed the poison message, as a segfaulting handler would. It
#: exits when nothing arrives for ``idle`` seconds.
WORKER = """
import os, signal, sys, brokerkit
url, vt, idle, group = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] or None
with brokerkit.connect(url, visibility_timeout=vt, max_deliveries=3) as broker:
    subscription = broker.subscribe("jobs", group=group, prefetch=10)
    while True:
        delivery = subscription.receive(timeout=idle)
        if delivery is None:
            break
        if delivery.body == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        print(delivery.id, delivery.attempt, flush=True)
        delivery.ack()
"""


def supervise(url: str, vt: float, idle: float, group: str = "") -> tuple[dict[str, int], int]:
    """Run the worker, restarting it after each kill as a supervisor would, until a run
    ends on its own; return {message id: attempt it was handled at} and the kills."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    handled: dict[str, int] = {}
    kills = 0
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, f"never settled: handled {handled}, {kills} kills"
        worker = subprocess.run(
            [sys.executable, "-c", WORKER, url, str(vt), str(idle), group],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        for line in worker.stdout.splitlines():
            message_id, attempt = line.split()
            handled[message_id] = int(attempt)
        if worker.returncode == 0:
            return handled, kills
        assert worker.returncode == -9, worker.stderr
        kills += 1
