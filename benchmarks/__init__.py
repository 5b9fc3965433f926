"""Benchmarks run outside pytest: ``python -m benchmarks.bench_decoders --help``."""
