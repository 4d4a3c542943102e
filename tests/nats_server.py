"""The NATS JetStream server the NATS tests use, and per-test stream names.

The tests use the server at ``$BROKERKIT_NATS_URL`` (default ``nats://127.0.0.1:4222``),
which this machine and CI run as a service. Without one the tests are skipped and say
why. Each test gets a fresh ``prefix`` (one JetStream stream); the fixture deletes that
stream, and only that stream, when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

NATS_URL = os.environ.get("BROKERKIT_NATS_URL", "nats://127.0.0.1:4222")


def nats_address() -> tuple[str, int]:
    parts = urlsplit(NATS_URL)
    return parts.hostname or "127.0.0.1", parts.port or 4222


def _reachable() -> bool:
    try:
        with socket.create_connection(nats_address(), timeout=1.0):
            return True
    except OSError:
        return False


def delete_stream(name: str) -> None:
    """Delete the stream ``name`` (one this run created), if it exists."""
    import nats

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(delete())


@pytest.fixture
def nats_prefix() -> Iterator[str]:
    """A stream name (the ``prefix`` option) no other test uses; deleted afterwards."""
    if not _reachable():
        pytest.skip(f"no NATS server at {NATS_URL} (set BROKERKIT_NATS_URL to run these tests)")
    name = f"bkt_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        delete_stream(name)
