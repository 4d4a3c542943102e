"""brokerkit's benchmark suite: each Redis backend next to raw redis-py and kombu.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the repository
root; results go to ``benchmarks/results/latest.md`` and ``latest.json``.
"""
