"""Bytes one transformer layer keeps for backward, per attention kind and length, measured exactly.

    python benchmarks/layer_memory.py --out benchmarks/results/layer_memory_cpu

This is the per-layer memory of a training step without the noise of a resident-memory peak. Figure 2 of the
S-Enformer report estimates it as (11-layer peak - 1-layer peak) / 10, which
``senformer benchmark scaling`` reproduces. A resident-memory peak also holds transient buffers and memory the
allocator keeps, and the two depths can peak in different phases of the step (the conv tower's backward for
one layer, the transformer's for eleven), so at short lengths that difference is noisy. This script measures
the quantity itself: the distinct storages autograd saves in one default-width layer (pre-norm attention with
its projections and relative positions, and the MLP), at batch 1, in float32 and under bf16 autocast.
Deterministic: no timing, nothing depends on the load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from senformer.bench.memory import saved_tensor_bytes
from senformer.config import ATTENTION_KINDS, EnformerConfig
from senformer.io import atomic_write_text
from senformer.model.attention import build_attention
from senformer.model.enformer import TransformerBlock
from senformer.record import machine_info

LENGTHS = (131_072, 262_144, 393_216, 524_288, 786_432, 1_048_576)


def measure(attention: str, length: int, precision: str, dim: int = 1536) -> int:
    config = EnformerConfig(attention=attention, dim=dim)
    block = TransformerBlock(config, build_attention(config, 0)).train()
    positions = length // config.bin_size
    x = torch.randn(1, positions, dim, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return saved_tensor_bytes(block, x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the results (JSON and markdown)")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), metavar="BP,BP,...",
                        help="comma-separated input lengths in bp (default: %(default)s)")
    parser.add_argument("--max-full-length", type=int, default=786_432,
                        help="full attention's saved logits grow as T^2: longer lengths are not measured "
                        "(default: %(default)s)")
    args = parser.parse_args(argv)
    lengths = [int(value) for value in args.lengths.split(",")]
    rows = []
    for precision in ("bf16", "fp32"):
        for length in lengths:
            for attention in ATTENTION_KINDS:
                if attention == "full" and length > args.max_full_length:
                    continue
                saved = measure(attention, length, precision)
                rows.append({"attention": attention, "length": length, "positions": length // 128,
                             "precision": precision, "saved_bytes": saved})
                print(f"{precision} {attention:8s} {length:>9,} bp: {saved / 1e6:8.1f} MB", flush=True)
    lines = ["| precision | length (bp) | positions | " + " | ".join(f"{k} (MB)" for k in ATTENTION_KINDS)
             + " | bigbird / full |", "|" + "---|" * (4 + len(ATTENTION_KINDS))]
    for precision in ("bf16", "fp32"):
        for length in lengths:
            cells = {r["attention"]: r["saved_bytes"] for r in rows if r["precision"] == precision and r["length"] == length}
            ratio = f"{cells['bigbird'] / cells['full']:.2f}" if "full" in cells else "-"
            lines.append(f"| {precision} | {length:,} | {length // 128:,} | "
                         + " | ".join(f"{cells[k] / 1e6:,.0f}" if k in cells else "-" for k in ATTENTION_KINDS)
                         + f" | {ratio} |")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": "bytes saved for backward by one transformer layer (dim 1536, batch 1)",
                "machine": machine_info(), "rows": rows}
    atomic_write_text(args.out / "layer_memory.json", json.dumps(document, indent=1) + "\n")
    atomic_write_text(args.out / "layer_memory.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
