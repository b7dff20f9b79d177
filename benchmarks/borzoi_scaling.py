"""Borzoi's time and memory against input length (262,144 to 2,097,152 bp), per attention kind, mode and
precision, beside borzoi-pytorch where it runs; resumable. The same as ``senformer benchmark borzoi``, whose
``--help`` documents every option.

    python benchmarks/borzoi_scaling.py --out benchmarks/results/borzoi_cpu
    python benchmarks/borzoi_scaling.py --kinds bigbird --modes train --lengths 524288 --out ...
"""

import sys

from senformer.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "borzoi", *sys.argv[1:]]))
