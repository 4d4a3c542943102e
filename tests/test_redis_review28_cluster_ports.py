"""The ports of the test clusters' nodes (and their cluster-bus ports, +10000) lie below
the ephemeral range, where no ``bind(("127.0.0.1", 0))`` of another test worker's
server, and no outgoing connection, can take them while a killed node is down.

They came from ``bind(0)`` too: a killed master's port pair, free until the node is
started again, could be handed to another worker's server. A plain server there made
the node's restart answer PING for it (tests/test_redis_review28_server_identity.py);
a cluster node of another worker's there answers the cluster's pings for the dead
master with another node id, so every node marks the master ``noaddr``, never fails it,
and its replica is never promoted (tried by hand: none in 20 s, the slot map naming the
master at port 0)."""

from __future__ import annotations

from pathlib import Path

from tests.redis_cluster import cluster_free_port


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def test_a_node_port_pair_lies_below_the_ephemeral_range() -> None:
    low = _ephemeral_low()
    ports = [cluster_free_port() for _ in range(20)]
    assert all(port + 10000 < low for port in ports), (low, ports)


def test_no_port_is_handed_out_twice_as_a_node_or_a_bus_port() -> None:
    ports = [cluster_free_port() for _ in range(50)]
    taken = [p for port in ports for p in (port, port + 10000)]
    assert len(set(taken)) == len(taken)
