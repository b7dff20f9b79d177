"""``senformer info``: the configuration, parameter counts per module and the attention pattern."""

from __future__ import annotations

import argparse

from .common import add_model_options, config_from_args
from .options import whole


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="show a model's configuration, parameter counts and attention pattern",
        description="Build the model on the meta device (no memory) and describe it.",
    )
    add_model_options(parser)
    parser.add_argument("--length", type=whole(1), default=None, help="input length in bp for the pattern summary "
                        "(default: 196,608)")
    parser.set_defaults(run=run)


def describe(config, sequence_length: int) -> str:
    import torch

    from ..model.attention.pattern import make_block_pattern
    from ..model.enformer import Enformer

    with torch.device("meta"):
        model = Enformer(config)
    lines = ["configuration:"]
    for field, value in config.to_dict().items():
        lines.append(f"  {field:<32} {value}")
    lines.append("trainable parameters:")
    for name, count in model.parameter_counts().items():
        if count:
            lines.append(f"  {name:<32} {count:>14,}")
    config.validate_sequence_length(sequence_length)
    positions = config.num_positions(sequence_length)
    lines.append(f"input {sequence_length:,} bp -> {positions:,} positions -> {config.output_length(sequence_length):,} output bins")
    lines.append(f"attention: {config.attention}, relative positions {'on' if config.relative_positions else 'off'}")
    if config.attention == "bigbird" and config.depth:
        pattern = make_block_pattern(
            positions, config.heads, config.block_size, config.num_window_blocks, config.num_global_blocks,
            config.num_random_blocks, config.attention_seed, layer=0,
        )
        pairs = int(pattern.block_mask().sum()) * config.block_size**2 / config.heads
        lines.append(
            f"  blocks of {config.block_size}: {pattern.num_blocks} blocks; each query block attends "
            f"{config.num_window_blocks} window + {len(pattern.global_blocks)} global + {config.num_random_blocks} random "
            f"blocks; {'dense fallback' if pattern.dense else f'{pairs / positions**2:.1%} of the dense pairs'}"
        )
    elif config.attention == "chunked":
        lines.append(f"  exact, {config.chunk_size} queries per chunk, recomputed in backward")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from ..constants import SEQUENCE_LENGTH

    print(describe(config, args.length or SEQUENCE_LENGTH))
    return 0
