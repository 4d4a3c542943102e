"""An example brokerkit plugin: ``sqlite:///path.db``, a work queue in one SQLite file."""

from brokerkit_example.backend import SQLiteBroker

__all__ = ["SQLiteBroker"]
