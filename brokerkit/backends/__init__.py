"""The backends that come with brokerkit, each an ordinary plugin."""
