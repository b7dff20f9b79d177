"""``senformer benchmark {attention,scaling}``: each benchmark lives in ``senformer.bench.<name>``."""

from __future__ import annotations

import importlib

BENCHMARKS = ["attention", "scaling"]


def register(subparsers) -> None:
    parser = subparsers.add_parser("benchmark", help="measure speed and memory (attention layer, whole model)")
    kinds = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name in BENCHMARKS:
        importlib.import_module(f"senformer.bench.{name}").register(kinds)
