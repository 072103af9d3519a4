"""surgebench: load-testing and benchmarking harness for streaming LLM agent services."""

__version__ = "0.1.0"
