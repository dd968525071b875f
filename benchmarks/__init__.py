"""pytest-benchmark suite of attnbench: run with ``pytest benchmarks --benchmark-only``."""
