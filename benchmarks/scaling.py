"""Memory and speed against sequence length (Figures 1-3 of the S-Enformer report), resumable.

    python benchmarks/scaling.py --quick --out benchmarks/results/scaling_quick
    python benchmarks/scaling.py --lengths 131072,262144,393216,524288,786432 --out benchmarks/results/scaling_full

Same as ``senformer benchmark scaling``; every option is documented by ``--help``.
"""

import sys

from senformer.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "scaling", *sys.argv[1:]]))
