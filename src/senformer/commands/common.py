"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import PRESETS, EnformerConfig, preset


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--preset/--config/--attention and sparse settings that build an EnformerConfig."""
    group = parser.add_argument_group("model")
    group.add_argument("--preset", choices=sorted(PRESETS), default="enformer", help="named configuration")
    group.add_argument("--config", help="EnformerConfig JSON file (overrides the preset)")
    group.add_argument("--attention", choices=["full", "chunked", "bigbird"], help="attention kind")
    group.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="override one config field (JSON value), e.g. --set depth=1 --set dim=768")


def config_from_args(args: argparse.Namespace) -> EnformerConfig:
    config = EnformerConfig.from_json(args.config) if getattr(args, "config", None) else preset(args.preset)
    overrides: dict[str, Any] = {}
    for item in getattr(args, "set", []):
        field, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            overrides[field] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[field] = raw
    if getattr(args, "attention", None):
        overrides["attention"] = args.attention
    if overrides:
        merged = {**config.to_dict(), **overrides}
        config = EnformerConfig.from_dict(merged)
    return config
