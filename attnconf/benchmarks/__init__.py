"""The benchmark suite (pytest-benchmark), kept out of the default test paths: run it with ``pytest benchmarks``."""
