"""A private Redis Cluster and a private Sentinel set for the tests, started from the
``redis-server`` binary on free ports and torn down at the end.

:class:`RedisClusterSet` is 3 masters and 3 replicas (``redis-cli --cluster create ...
--cluster-replicas 1``); :class:`SentinelSet` is a master, one replica and three
sentinels watching it. Both are meant to be started once per test session (per
xdist worker) by the session fixtures in ``tests/conftest.py``; ``stop()`` kills every
process they started and removes every directory they made.

Failover is quick on purpose: a node or master that does not answer for 1 s is
taken for dead, so that a kill -9 test waits seconds, not the defaults' minutes.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from tests.redis_server import (
    RedisServer,
    find_redis_cli,
    find_redis_server,
    kill_process,
    wait_until,
)

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "EverySlotNode",
    "OneNodeCluster",
    "RedisClusterSet",
    "SentinelSet",
    "cluster_free_port",
    "create_cluster",
]

#: The cluster bus of a node listens on its port + 10000.
_BUS_OFFSET = 10000
#: Milliseconds without an answer after which a cluster node is taken for dead and
#: its replica promoted.
NODE_TIMEOUT_MS = 1000
#: The same for the sentinels (``down-after-milliseconds``). Longer than the
#: cluster's: under the full suite (four workers a core) a master that is alive can
#: stall past a second, and a failover back to a server a few seconds into its new
#: life as a replica, while clients still write to the old master (the sentinels
#: reconfigure it only when it answers them again), lost a published message in one
#: run of three (test_sentinel_master_killed_under_load, three +switch-master in
#: seven seconds). Production settings are 5 to 30 s.
SENTINEL_DOWN_AFTER_MS = 3000


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port of the range the kernel hands out for ``bind(0)`` and connects."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default (macOS's range starts higher)


#: The lowest node port handed out (clear of the usual services' ports below).
_LOWEST_PORT = 10000
#: Every node and bus port this process has handed out: never handed out again.
_handed_out: set[int] = set()


def cluster_free_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too, both below the
    ephemeral range: no ``bind(0)`` of another test worker's server, and no outgoing
    connection, can take a killed node's ports while it is down (a cluster node of
    another worker's there answered for the dead master, so that it was never failed
    over; a plain server answered its restart's PING)."""
    top = _ephemeral_low() - _BUS_OFFSET
    for _ in range(200):
        port = random.randrange(_LOWEST_PORT, top) if top > _LOWEST_PORT else _any_free_port()
        pair = {port, port + _BUS_OFFSET}
        if port + _BUS_OFFSET < 65536 and not pair & _handed_out and all(map(_port_free, pair)):
            _handed_out.update(pair)
            return port
    raise RuntimeError("found no free port pair for a cluster node")


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def create_cluster(
    ports: Sequence[int], timeout: float, *, replicas: int = 0, tls_ca: Path | None = None
) -> None:
    """Join the nodes listening on ``ports`` of 127.0.0.1 into a cluster with
    ``redis-cli --cluster create`` (``--cluster-replicas`` when ``replicas``; over TLS,
    trusting ``tls_ca``, when it is given)."""
    tls = ["--tls", "--cacert", str(tls_ca)] if tls_ca is not None else []
    more = ["--cluster-replicas", str(replicas)] if replicas else []
    subprocess.run(
        [find_redis_cli(), *tls, "--cluster", "create",
         *[f"127.0.0.1:{port}" for port in ports], *more, "--cluster-yes"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
    )  # fmt: skip


class _ClusterNode(RedisServer):
    """One cluster-enabled redis-server."""

    def __init__(self) -> None:
        # a replica promotes itself however long it was cut off from its master
        config = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip
        super().__init__(config=config)
        self.port = cluster_free_port()


class EverySlotNode(RedisServer):
    """A cluster-enabled server (its subclass says how) that, once started, holds every
    slot: a Redis Cluster of one master."""

    #: What the error says did not become healthy.
    cluster_name = "the one-node cluster"

    def start(self, timeout: float = 30.0, *, replica_of: RedisServer | None = None) -> Self:
        """Start the node, give it every slot, and wait until the cluster is ok."""
        super().start(timeout, replica_of=replica_of)
        client = self.client()
        try:
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            wait_until(
                lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"),
                timeout,
                f"{self.cluster_name} did not become healthy",
                interval=0.05,
                give_up=self.stop,
            )
        finally:
            client.close()
        return self


class OneNodeCluster(EverySlotNode, _ClusterNode):
    """A Redis Cluster of one master that holds every slot and announces, in its slot
    map, ``announce_ip`` (127.0.0.2 by default), where it does not listen: a seed that
    answers and a master of the map that does not, as while a master fails over."""

    def __init__(self, announce_ip: str = "127.0.0.2") -> None:
        super().__init__()
        self.config = (*self.config, "--cluster-announce-ip", announce_ip)

    def url(self, scheme: str = "redis+stream", db: int = 0) -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{db}?cluster=true"


def _replica_online(replication: dict[str, object]) -> bool:
    """Whether a master's INFO replication shows a replica in sync (``state=online``)."""
    replica = replication.get("slave0")
    return isinstance(replica, dict) and replica.get("state") == "online"


class RedisClusterSet:
    """3 masters and 3 replicas on 127.0.0.1, each on a free port."""

    def __init__(self) -> None:
        self.nodes = [_ClusterNode() for _ in range(6)]

    def start(self, timeout: float = 30.0, attempts: int = 3) -> RedisClusterSet:
        """Start the six nodes and join them; on a port taken meanwhile by another
        process (free-port picking races with other test workers), start afresh on
        new ports, up to ``attempts`` times."""
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except (RuntimeError, subprocess.CalledProcessError):
                if attempt == attempts - 1:
                    raise
                self.nodes = [_ClusterNode() for _ in range(6)]
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> RedisClusterSet:
        try:
            for node in self.nodes:
                node.start()
            create_cluster([node.port for node in self.nodes], timeout, replicas=1)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, scheme: str, **options: str) -> str:
        """A URL naming the first three nodes as seeds, with ``cluster=true``."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        query = "&".join(f"{k}={v}" for k, v in {"cluster": "true", **options}.items())
        return f"{scheme}://{seeds}/0?{query}"

    def client(self) -> redis.RedisCluster:
        """A plain redis-py cluster client, for assertions."""
        alive = next(n for n in self.nodes if n.process is not None and n.process.poll() is None)
        return redis.RedisCluster(host="127.0.0.1", port=alive.port, socket_timeout=10)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def master_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now."""
        client = self.client()
        try:
            found = client.get_node_from_key(key)
            assert found is not None
            return self.node(int(found.port))
        finally:
            client.close()

    def masters(self) -> list[RedisServer]:
        """The nodes that are masters now (asked of a live node)."""
        client = self.client()
        try:
            return [self.node(int(n.port)) for n in client.get_primaries()]
        finally:
            client.close()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every live node says the cluster is ok, every slot served by a
        live master, every live node agrees on who serves what, and every master has a
        replica in sync."""
        wait_until(
            self._healthy, timeout, "the test Redis Cluster did not become healthy", interval=0.1
        )

    def _healthy(self) -> bool:
        views = set()
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            client = node.client()
            try:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
                views.add(tuple(sorted((int(s[0]), int(s[2][1])) for s in slots)))
                replication = client.info("replication")
                if replication.get("role") == "master" and not _replica_online(replication):
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return len(views) == 1

    def describe(self) -> str:
        """Each node's process and its view of the cluster (``CLUSTER NODES``), and the
        end of its log: a failover test's evidence when a replica is never promoted."""
        lines = []
        for node in self.nodes:
            alive = node.process is not None and node.process.poll() is None
            pid = node.process.pid if node.process is not None else None
            lines.append(f"node {node.port} (pid {pid}, {'running' if alive else 'ended'}):")
            client = node.client()
            try:
                text = client.execute_command("CLUSTER", "NODES")
                lines += (text.decode() if isinstance(text, bytes) else str(text)).splitlines()
            except redis.RedisError as exc:
                lines.append(f"  ({exc!r})")
            finally:
                client.close()
            log = node.directory / "redis.log"
            if log.exists():
                lines += log.read_text(errors="replace").splitlines()[-15:]
        return "\n".join(lines)

    def restart_dead(self) -> None:
        """Start every killed node again (it rejoins as a replica) and wait for health."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                node.start()
        self.wait_healthy()

    def stop(self) -> None:
        """Stop every node, even when stopping one of them fails."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()

    def __enter__(self) -> RedisClusterSet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Sentinel:
    """One ``redis-server --sentinel`` process watching ``master_port`` as ``name``."""

    def __init__(self, name: str, master_port: int) -> None:
        self.port = cluster_free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="brokerkit-sentinel-")
        self.config = Path(self._dir.name) / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\n"
            f"dir {self._dir.name}\nlogfile {self._dir.name}/sentinel.log\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {name} {SENTINEL_DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {name} 10000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [find_redis_server(), str(self.config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        kill_process(self.process)
        self._dir.cleanup()


class SentinelSet:
    """A master, one replica and three sentinels that follow them as ``name``."""

    def __init__(self, name: str = "bkmaster") -> None:
        self.name = name
        self.master = RedisServer()
        self.replica = RedisServer(config=("--replicaof", "127.0.0.1", str(self.master.port)))
        self.sentinels = [_Sentinel(name, self.master.port) for _ in range(3)]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, self.replica]

    def start(self, timeout: float = 30.0) -> SentinelSet:
        try:
            self.master.start()
            self.replica.start()
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, scheme: str, **options: str) -> str:
        """A URL naming the three sentinels, with ``sentinel=<name>``."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query = "&".join(f"{k}={v}" for k, v in {"sentinel": self.name, **options}.items())
        return f"{scheme}://{hosts}/0?{query}"

    def current_master(self) -> RedisServer:
        """The server the sentinels name as master now (the first that answers)."""
        for master in self._masters_named():
            return master
        raise RuntimeError("no sentinel answered")

    def all_name(self, server: RedisServer) -> bool:
        """Whether every live sentinel names ``server`` as master."""
        named = list(self._masters_named())
        live = [s for s in self.sentinels if s.process is not None and s.process.poll() is None]
        return len(named) == len(live) and all(m is server for m in named)

    def _masters_named(self) -> Iterator[RedisServer]:
        for sentinel in self.sentinels:
            if sentinel.process is None or sentinel.process.poll() is not None:
                continue
            client = redis.Redis(host="127.0.0.1", port=sentinel.port, socket_timeout=5)
            try:
                _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                found = next(s for s in self.servers if s.port == int(port))
            except (redis.RedisError, TypeError, ValueError, StopIteration):
                continue
            finally:
                client.close()
            yield found

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every sentinel knows the master, its replica and the other two
        sentinels, and the master has a connected replica."""
        wait_until(
            self._healthy, timeout, "the test Sentinel set did not become healthy", interval=0.1
        )

    def _healthy(self) -> bool:
        try:
            master = self.current_master()
        except RuntimeError:
            return False
        client = master.client()
        try:
            info = client.info("replication")
            if info.get("role") != "master" or not _replica_online(info):
                return False
        except redis.RedisError:
            return False
        finally:
            client.close()
        for sentinel in self.sentinels:
            client = redis.Redis(host="127.0.0.1", port=sentinel.port, socket_timeout=5)
            try:
                get = client.sentinel_master(self.name)  # parsed into a dict by redis-py
                if int(get.get("num-other-sentinels", 0)) < 2:
                    return False
                if int(get.get("num-slaves", 0)) < 1 or int(get.get("port", 0)) != master.port:
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    def restart_dead(self) -> None:
        """Start a killed server again, as the current master's replica."""
        for server in self.servers:
            if server.process is not None and server.process.poll() is not None:
                server.start(replica_of=self.current_master())
        self.wait_healthy()

    def stop(self) -> None:
        for sentinel in self.sentinels:
            with contextlib.suppress(Exception):
                sentinel.stop()
        for server in (self.replica, self.master):
            with contextlib.suppress(Exception):
                server.stop()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
