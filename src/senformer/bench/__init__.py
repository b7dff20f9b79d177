"""Benchmarks: scripts that measure, never tests. Each module exposes ``register(subparsers)``."""
