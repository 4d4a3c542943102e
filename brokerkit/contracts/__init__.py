"""The brokerkit contract suite: the promises every backend is checked against."""
