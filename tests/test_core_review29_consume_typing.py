"""A user's script type-checks under ``mypy --strict`` where it ends a consume loop
at a precise point, as docs/asyncio.md shows: ``contextlib.aclosing(broker.consume(...))``
(and ``contextlib.closing`` around the sync loop). ``consume`` and a subscription's
iterator were typed as plain iterators, which have no ``aclose``/``close``: mypy
refused the documented pattern."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_SCRIPT = """
import contextlib

import brokerkit
import brokerkit.aio


async def consume_until_first() -> None:
    async with brokerkit.aio.connect("memory://") as broker:
        async with contextlib.aclosing(broker.consume("t", timeout=0)) as deliveries:
            async for delivery in deliveries:
                await delivery.ack()
                break
        subscription = await broker.subscribe("t")
        async with subscription, contextlib.aclosing(aiter(subscription)) as loop:
            async for delivery in loop:
                await delivery.ack()
                break


def consume_sync() -> None:
    with brokerkit.connect("memory://") as broker:
        with contextlib.closing(broker.consume("t", timeout=0)) as deliveries:
            for delivery in deliveries:
                delivery.ack()
                break
        with broker.subscribe("t") as subscription:
            with contextlib.closing(iter(subscription)) as loop:
                for delivery in loop:
                    delivery.ack()
                    break
"""


@pytest.mark.timeout(300)
def test_closing_a_consume_loop_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(script),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
