"""A program whose asyncio worker left a plain handler running (past the grace period)
exits once the run has returned, as under the sync worker (review 29): the asyncio
worker ran plain handlers in a ``ThreadPoolExecutor``, whose threads are joined at
interpreter exit, so ``asyncio.run(main())`` returned and the process then never
ended while the handler hung (under systemd or Kubernetes, until the SIGKILL). The
handler threads are daemons now, as the sync worker's slots are. Run in a process of
its own: the stuck thread is the point."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import asyncio
    import threading

    import brokerkit.aio

    never = threading.Event()


    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=0.1)
            started = threading.Event()

            @worker.handler("jobs")
            def stuck(body: object) -> None:
                started.set()
                never.wait()  # never set: the handler outlives the run

            async with worker.running():
                await broker.publish("jobs", 1)
                await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
            print("drained", worker.drained, flush=True)


    asyncio.run(main())
    print("returned", flush=True)
    """
)


def test_a_handler_thread_left_running_does_not_keep_the_process_alive() -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"the process did not exit after the run returned: {exc.stdout!r}"
        ) from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["drained", "False", "returned"], done.stdout
