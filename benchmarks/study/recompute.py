"""Recompute every interval and verdict of a recorded accuracy study from its per-seed files.

Usage: python benchmarks/study/recompute.py [RESULTS] [RULES]
(defaults: benchmarks/results/accuracy_study and benchmarks/study/settings.json). Prints each rule's verdict
with both intervals and exits 1 when anything differs from what study.json recorded.
"""

import sys
from pathlib import Path

from senformer.study.results import recompute


def main(argv: list[str]) -> int:
    results = Path(argv[0] if argv else "benchmarks/results/accuracy_study")
    rules = Path(argv[1] if len(argv) > 1 else "benchmarks/study/settings.json")
    decisions, problems = recompute(results, rules)
    for decision in decisions:
        print(f"{decision['name']}: {decision['verdict']}: {decision['statement']}")
    for problem in problems:
        print(f"DIFFERS: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
