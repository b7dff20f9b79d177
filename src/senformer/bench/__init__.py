"""Benchmarks: measurements, never tests; ``senformer benchmark`` (commands/benchmark.py) parses their options.

``attention`` times one attention layer per kind. The scaling sweep (Figures 1-3) is split by job:
``points`` (a point's settings), ``measure`` (the child that runs one), ``sweep`` (the grid, resuming,
recording), ``flops``, ``summary``, ``tables``, ``figures`` and ``machine``. Both run every point through
``memory.run_isolated``, the one capped-subprocess runner. The variants benchmark (the edit engine against
whole windows) likewise: ``variant_points``, ``variant_measure`` (the child), ``variant_report`` and ``variants``
(the resumable run).
"""
