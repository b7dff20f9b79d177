"""``analyze variants`` in one process against two torchrun ranks on the same work (the sharding check of the
variant-scoring work): wall time of each, and whether the merged outputs are byte-identical.

    python benchmarks/variants_ranks.py --out benchmarks/results/variants_ranks_cpu

A random model (BatchNorm statistics set, so outputs are not trivial) of ``--dim``/``--depth`` is saved, a random
genome and a VCF of ``--variants`` SNVs are written, and the same command runs as (a) one process with
``--threads 2``, (b) one process with ``--threads 1``, (c) ``torchrun --nproc_per_node 2`` with ``--threads 1``
per rank. On a 2-core machine (c) can at best match (a): the point is that the work splits and merges exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _setup(root: Path, dim: int, depth: int, variants: int, seed: int) -> dict[str, Path]:
    from senformer import Enformer, EnformerConfig, save_model

    torch.manual_seed(seed)
    model = Enformer(EnformerConfig(dim=dim, depth=depth, heads=8, key_size=dim // 8 if dim // 8 >= 6 else 8,
                                    output_heads={"human": 64}, conv_tower_divisible_by=16)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
        for name, parameter in model.named_parameters():
            if "to_out" in name:
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=generator))
    save_model(model, root / "model")
    rng = np.random.default_rng(seed)
    size = 1_000_000
    chrom = "".join(rng.choice(list("ACGT"), size))
    (root / "genome.fa").write_text(">chr1\n" + "\n".join(chrom[i : i + 60] for i in range(0, size, 60)) + "\n")
    positions = sorted(rng.choice(np.arange(200_000, 800_000), variants, replace=False))
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000000>",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for number, position in enumerate(positions):
        ref = chrom[position - 1]
        alt = "ACGT"[("ACGT".index(ref) + 1) % 4]
        lines.append(f"chr1\t{position}\tv{number}\t{ref}\t{alt}\t.\t.\t.")
    (root / "variants.vcf").write_text("\n".join(lines) + "\n")
    return {"model": root / "model", "fasta": root / "genome.fa", "vcf": root / "variants.vcf"}


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--dim", type=int, default=384, help="model width (default: 384)")
    parser.add_argument("--depth", type=int, default=2, help="transformer layers (default: 2)")
    parser.add_argument("--variants", type=int, default=16, help="SNVs scored (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of model, genome and variants (default: 0)")
    args = parser.parse_args()
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    inputs = _setup(work, args.dim, args.depth, args.variants, args.seed)
    senformer = [sys.executable, "-m", "senformer"]
    common = ["analyze", "variants", "--weights", str(inputs["model"]), "--fasta", str(inputs["fasta"]), "--vcf",
              str(inputs["vcf"]), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    times = {
        "one process, 2 threads": _run([*senformer, *common, "--threads", "2", "--out", str(work / "one-t2.tsv")], env),
        "one process, 1 thread": _run([*senformer, *common, "--threads", "1", "--out", str(work / "one-t1.tsv")],
                                      {**env, "OMP_NUM_THREADS": "1"}),
        "torchrun, 2 ranks x 1 thread": _run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "senformer",
             *common, "--threads", "1", "--out", str(work / "ranks.tsv")], {**env, "OMP_NUM_THREADS": "1"}),
    }
    identical = (work / "one-t1.tsv").read_bytes() == (work / "ranks.tsv").read_bytes()
    from senformer.record import machine_info

    result = {"machine": machine_info(), "dim": args.dim, "depth": args.depth, "variants": args.variants,
              "seconds": {name: round(value, 2) for name, value in times.items()},
              "ranks_equal_one_process_1_thread_bytes": identical,
              "speed_up_ranks_vs_one_process_2_threads": round(times["one process, 2 threads"]
                                                               / times["torchrun, 2 ranks x 1 thread"], 3)}
    (out / "variants_ranks.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["seconds"]), "byte-identical:", identical)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
