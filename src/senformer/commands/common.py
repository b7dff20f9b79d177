"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ..config import ATTENTION_KINDS, PRESETS, EnformerConfig, preset
from ..errors import UserError


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--preset/--config/--attention and sparse settings that build an EnformerConfig."""
    group = parser.add_argument_group("model")
    group.add_argument("--preset", choices=sorted(PRESETS), default="enformer", help="named configuration")
    group.add_argument("--config", help="EnformerConfig JSON file (overrides the preset)")
    group.add_argument("--attention", choices=ATTENTION_KINDS, help="attention kind")
    group.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="override one config field (JSON value), e.g. --set depth=1 --set dim=768")


def parse_set_options(items: list[str], attention: str | None = None) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items -> ``{field: value}``; values are JSON when they parse (``null``, ``1536``,
    ``true``), strings otherwise. ``attention`` (from ``--attention``) is added when given."""
    overrides: dict[str, Any] = {}
    for item in items:
        field, sep, raw = item.partition("=")
        if not sep or not field:
            raise UserError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            overrides[field] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[field] = raw
    if attention:
        overrides["attention"] = attention
    return overrides


def parse_named_weights(items: list[str]) -> dict[str, str]:
    """``--weights [NAME=]PATH`` items -> ``{name: path}``; a name defaults to the path's last component and
    is made unique (``name_2``...)."""
    named: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or "/" in name or Path(item).exists():
            name, path = Path(item.rstrip("/")).name or "model", item
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        base, number = name, 2
        while name in named:
            name, number = f"{base}_{number}", number + 1
        named[name] = path
    return named


def config_from_args(args: argparse.Namespace) -> EnformerConfig:
    config = EnformerConfig.from_json(args.config) if getattr(args, "config", None) else preset(args.preset)
    overrides = parse_set_options(getattr(args, "set", []))
    if getattr(args, "attention", None):
        overrides["attention"] = args.attention
    if overrides:
        merged = {**config.to_dict(), **overrides}
        config = EnformerConfig.from_dict(merged)
    return config
