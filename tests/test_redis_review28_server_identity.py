"""The test harness's ``RedisServer`` knows which process serves its port.

A flake hunt saw every cluster case of test_redis_review27_new_process_failover fail
on one worker, each after 60 s of "the replica was never promoted", while the cluster
was healthy between cases: the same master (the one of the topic's slot) every time.
``start()`` took any server that answered PING on its port for the one it had just
started, so a restart while the node's server still ran (or while another process held
its port) reported success for a process that exited at once (the port was taken): the
object then held a dead process, ``kill()`` killed nothing, and the "killed" master went
on serving. Now ``start()`` checks that the answering server is its own process, and
``kill()`` also kills a server of the object's own directory that still answers on its
port (one started under a handle the object lost)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import redis

from tests.redis_server import RedisServer, kill_process


def _answers(server: RedisServer) -> bool:
    """Whether a server answers PING on the port (at once when nothing listens, not
    after redis-py's retries)."""
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    except OSError:
        return False
    client = server.client()
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_a_start_on_a_port_another_server_answers_on_is_an_error() -> None:
    with RedisServer() as holder:
        assert holder.process is not None
        second = RedisServer()
        second.port = holder.port
        try:
            with pytest.raises(RuntimeError, match=f"pid {holder.process.pid}"):
                second.start()
        finally:
            second.stop()
        assert holder.process.poll() is None and _answers(holder)


def test_a_restart_of_a_running_server_is_an_error_and_leaves_it_killable() -> None:
    with RedisServer() as server:
        running = server.process
        assert running is not None
        with pytest.raises(RuntimeError, match=f"pid {running.pid}"):
            server.start()  # what a restart of a node that was never killed did
        server.kill()
        # (SIGKILLed: its port went quiet as it exited; wait() reaps it, poll() may come
        # a moment before the kernel has made it a zombie)
        assert running.wait(10) is not None
        assert not _answers(server)


def test_kill_kills_the_server_of_its_directory_whose_handle_it_lost() -> None:
    with RedisServer() as server:
        orphan = server.process
        assert orphan is not None
        # A start cut short after the spawn (a timeout signal while Popen returned)
        # leaves the object holding an older, finished process.
        server.process = subprocess.Popen([sys.executable, "-c", ""])
        server.process.wait()
        try:
            server.kill()
            assert not _answers(server)
            assert orphan.wait(10) is not None
        finally:
            kill_process(orphan)


def test_kill_leaves_alone_a_server_of_another_directory_on_its_port() -> None:
    """A process of someone else's that took the port after the kill is no business of
    ``kill()``'s."""
    with RedisServer() as server:
        server.kill()
        other = RedisServer()
        other.port = server.port  # what another test worker's free-port pick may give
        try:
            other.start()
            server.kill()
            assert other.process is not None and other.process.poll() is None
            assert _answers(other)
        finally:
            other.stop()
