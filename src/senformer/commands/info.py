"""``senformer info``: the configuration, parameter counts per module and the attention pattern; with
``--weights``, of those weights (a name also says where it comes from, its licence and size)."""

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
    parser.add_argument("--weights", metavar="NAME|PATH",
                        help="describe these weights instead of a preset: a name (enformer, borzoi[:N], "
                        "borzoi-mouse[:N], flashzoi[:N]; nothing is downloaded) or a weights path")
    parser.add_argument("--length", type=whole(1), default=None, help="input length in bp for the pattern summary "
                        "(default: the family's published input, 196,608 or 524,288)")
    parser.set_defaults(run=run)


def describe(config, sequence_length: int) -> str:
    import torch

    from ..model.attention.pattern import make_block_pattern
    from ..model.borzoi import build_model
    from ..model.enformer import Enformer

    with torch.device("meta"):
        model = build_model(config)
    lines = ["configuration:"]
    for field, value in config.to_dict().items():
        lines.append(f"  {field:<32} {value}")
    lines.append("trainable parameters:")
    for name, count in Enformer.parameter_counts(model).items():  # per child module: any family's
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


def describe_name(name: str) -> tuple[list[str], object]:
    """Where the named weights come from, their licence, size and cache folder, and their config: the cached
    copy's, else the published architecture's (nothing is downloaded)."""
    from ..config import config_from_json, preset
    from ..hub import WEIGHTS, borzoi_url, huggingface_url, weights_path, weights_url

    entry = WEIGHTS[name]
    urls = {"dm-enformer": f"{weights_url(entry.name)}/{entry.checkpoint}.*",
            "calico": f"{borzoi_url()}/{entry.calico_file}",
            "huggingface": f"{huggingface_url()}/{entry.huggingface_repo}"}
    cached = weights_path(name)
    lines = [f"{name}: {entry.description}" + (f" (canonical name {entry.name})" if entry.name != name else "")]
    lines += [f"  source {source + (' (default)' if source == entry.sources[0] else ''):<22} {urls[source]}"
              for source in entry.sources]
    lines.append(f"  licence                       {entry.licence}")
    if entry.megabytes:
        lines.append(f"  download                      about {entry.megabytes:,} MB (float32)")
    if len(entry.replicates) > 1:
        lines.append(f"  replicates                    {', '.join(entry.replicates)} (predict --ensemble averages them)")
    if (cached / "config.json").is_file():
        lines.append(f"  cached                        {cached}")
        return lines, config_from_json(cached / "config.json")
    lines.append(f"  cached                        no: `senformer download {name}` fetches and converts it into {cached}")
    if entry.name == "enformer":
        return lines, preset("enformer")
    family = "flashzoi" if entry.name.startswith("flashzoi") else "borzoi"
    heads = {"human": 7611, "mouse": 2608}
    if family == "borzoi":
        head = "mouse" if entry.name.endswith("-mouse") else "human"
        heads = {head: heads[head]}
    lines.append("  (below: the published architecture's preset; the download's own config.json replaces it once fetched)")
    return lines, preset(family, output_heads=heads)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..constants import SEQUENCE_LENGTH
    from ..hub import WEIGHTS
    from ..inference import default_sequence_length

    if args.weights is None:
        config = config_from_args(args)
        print(describe(config, args.length or SEQUENCE_LENGTH))
        return 0
    if args.weights in WEIGHTS and not Path(args.weights).exists():
        lines, config = describe_name(args.weights)
        print("\n".join(lines))
    else:
        from ..hub import load_model

        config = load_model(args.weights).config
    print(describe(config, args.length or default_sequence_length(config)))
    return 0
