"""``python -m brokerkit.cli``: the same as the ``brokerkit`` command."""

from brokerkit.cli import main

if __name__ == "__main__":
    main()
