"""How the suite shares its work between pytest-xdist workers.

xdist's ``loadscope`` hands each worker whole classes (or modules, for module-level
tests) so that class fixtures run once, and starts the scopes with the most tests
first. Four things make that slow here:

- a contract class runs the whole suite on one backend: a minute or two on one worker
  for a real-time backend; no test class has class fixtures, so each test method (with
  all its parameters) is a work unit of its own;
- a Redis Cluster (6 processes) or a Sentinel set (5) is a session fixture, so every
  worker that runs one cluster test starts a cluster of its own, seconds of waiting
  each; :data:`SHARED_SERVERS` puts the tests that need one into a few groups, each
  run by one worker, so the suite starts a few of them instead of one per worker;
- the number of tests says little about how long a scope takes (a contract class on
  a real-time backend waits for leases to run out): scopes start longest first, by
  the seconds each took in a recorded run (``tests/scope_seconds.json``), so that no
  long one starts last and keeps the run waiting on it. Refresh that file with
  ``pytest --record-scope-seconds tests/scope_seconds.json`` after adding slow tests;
  a scope it does not list (it took under a second) goes last;
- every worker imports every test module and all of brokerkit (assertion-rewritten,
  as pytest does for a plugin's package): seconds of CPU each, on two cores, when
  ``PYTHONDONTWRITEBYTECODE`` keeps Python from caching the result. :func:`warm_bytecode`
  compiles them once, in the controller, before the workers start, and they read it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

__all__ = [
    "SHARED_SERVERS",
    "ScopeSecondsRecorder",
    "WeightedScopeScheduling",
    "scope_of",
    "warm_bytecode",
]

#: Work units that need a Redis Cluster or a Sentinel set: node id prefix -> group.
#: Each group runs on one worker; the groups are sized to take about as long as the
#: longest other scopes.
SHARED_SERVERS = {
    "tests/contracts/test_redis_cluster_contract.py::TestRedisStreamOnCluster": "cluster-stream",
    "tests/contracts/test_redis_cluster_contract.py::TestRedisPubSubOnClusterAsync": (
        "cluster-stream"
    ),
    "tests/contracts/test_redis_cluster_contract.py::TestRedisListOnCluster": "cluster-list",
    "tests/contracts/test_redis_cluster_contract.py::TestRedisPubSubOnClusterContract": (
        "cluster-list"
    ),
    "tests/contracts/test_redis_cluster_contract.py::test_": "cluster-list",
    "tests/contracts/test_redis_cluster_contract.py::TestRedisListOnSentinel": "sentinel",
    "tests/contracts/test_redis_cluster_contract.py::TestRedisStreamOnSentinel": "sentinel",
    "tests/contracts/test_redis_cluster_contract.py::TestRedisPubSubOnSentinel": "sentinel",
    # these two modules use both a cluster and a Sentinel set
    "tests/test_redis_deployments.py::": "sentinel",
    "tests/test_cli_deployments.py::": "sentinel",
}

SCOPE_SECONDS = Path(__file__).with_name("scope_seconds.json")


def scope_of(nodeid: str) -> str:
    """The work unit of a test: its shared-server group; else, in a class, the test
    method with all its parameters (no test class has a fixture of class scope, and a
    contract class on a slow backend is too long to be one unit); else its module
    (where module fixtures live)."""
    for prefix, group in SHARED_SERVERS.items():
        if nodeid.startswith(prefix):
            return group
    parts = nodeid.split("::")
    if len(parts) > 2:
        return "::".join(parts[:3]).split("[", 1)[0]
    return parts[0]


class WeightedScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``loadscope`` with :data:`SHARED_SERVERS` groups, longest scopes first."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self._seconds: dict[str, float] = _load(SCOPE_SECONDS)
        self._ranked = False

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)

    def _assign_work_unit(self, node: Any) -> None:
        if not self._ranked:  # the first assignment: the queue is complete
            ranked = sorted(
                self.workqueue.items(),
                key=lambda unit: -self._seconds.get(unit[0], 0.0),
            )
            self.workqueue.clear()
            self.workqueue.update(ranked)
            self._ranked = True
        super()._assign_work_unit(node)


def _load(path: Path) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        return {}


class ScopeSecondsRecorder:
    """``--record-scope-seconds PATH``: sum each scope's test durations, write those
    of a second or more."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[scope_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        ranked = {
            s: round(t, 1) for s, t in sorted(self.seconds.items(), key=lambda st: -st[1]) if t >= 1
        }
        self.path.write_text(json.dumps(ranked, indent=0) + "\n")


def warm_bytecode(tests: Path, selected: list[Path]) -> None:
    """Import the test modules of ``tests`` that the run selected (files, or folders
    holding them), and so brokerkit, writing their bytecode to ``__pycache__`` (ignored
    by git) even where ``PYTHONDONTWRITEBYTECODE`` is set, so that the workers, which
    start next, read it instead of each compiling it all again. Only this process's
    own setting changes, and only meanwhile."""
    root = tests.parent
    modules: set[Path] = set()
    for path in selected:
        if path.is_dir():
            modules.update(path.rglob("test_*.py"))
        elif path.name.startswith("test_") and path.suffix == ".py":
            modules.add(path)
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        for module in sorted(m.resolve() for m in modules):
            if module.is_relative_to(tests.resolve()):
                relative = module.relative_to(root.resolve()).with_suffix("")
                # a module that fails to import (an extra not installed: importorskip)
                # fails, or is skipped, when the workers collect it, as without this
                with contextlib.suppress(Exception, pytest.skip.Exception):
                    importlib.import_module(".".join(relative.parts))
    finally:
        sys.dont_write_bytecode = previous
