"""Optional instrumentation built on brokerkit's message hooks.

- :mod:`brokerkit.instrumentation.opentelemetry`: traces (extra ``opentelemetry``).
- :mod:`brokerkit.instrumentation.prometheus`: metrics (extra ``prometheus``).
"""
