"""Borzoi's time and memory against input length (262,144 to 2,097,152 bp), per attention kind and mode,
beside borzoi-pytorch where it runs; resumable. Every option is documented by ``--help``.

    python benchmarks/borzoi_scaling.py --out benchmarks/results/borzoi_scaling.json
    python benchmarks/borzoi_scaling.py --kinds bigbird --modes train --lengths 524288 --out ...
"""

import sys

from senformer.bench.borzoi import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
