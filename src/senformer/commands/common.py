"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from ..config import ATTENTION_KINDS, PRESETS, EnformerConfig, preset
from ..errors import UserError


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--preset/--config/--attention and sparse settings that build an EnformerConfig."""
    group = parser.add_argument_group("model")
    group.add_argument("--preset", choices=sorted(PRESETS), default="enformer", help="named configuration (default: enformer)")
    group.add_argument("--config", help="EnformerConfig JSON file (overrides the preset)")
    group.add_argument("--attention", choices=ATTENTION_KINDS, help="attention kind (default: the configuration's)")
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


# Inputs, fingerprinted before anything is loaded: senformer.inputs (train uses them too) ----------------
from ..inputs import (  # noqa: E402,F401  (re-exported for the commands)
    dataset_digest, folder_digest, input_digest, large_file_digest, weights_files_digest,
)


# The existing-output rule, for every command -------------------------------------------------------------
@dataclasses.dataclass
class CommandOutput:
    """One command's output while it holds the lock: ``plan`` (see :mod:`senformer.io`) and its run record."""

    command: str
    plan: Any
    record: dict[str, Any]

    @property
    def up_to_date(self) -> bool:
        return self.plan.up_to_date

    @property
    def out(self) -> Path:
        return self.plan.out

    @property
    def partial(self) -> Path:
        return self.plan.partial

    def start(self) -> Path:
        """Create ``OUT.partial`` (a directory output: the folder) with its record; returns its path."""
        from ..io import start_partial

        return start_partial(self.plan, self.record)

    def finish(self, **resolved: Any) -> Path:
        """Move ``OUT.partial`` onto ``OUT`` with the run record (``resolved`` added to its settings)."""
        from ..io import finish_output

        record = {**self.record, "settings": {**self.record["settings"], **resolved}}
        return finish_output(self.plan, record)


# Arguments that never change a result, and paths, whose files count through their digests instead.
NOT_RESULTS = {"run", "out", "overwrite", "progress", "num_workers", "threads", "shard", "command", "analysis",
               "data_command", "benchmark", "no_check_crc"}


def command_fingerprint(command: str, settings: dict[str, Any], inputs: dict[str, Any],
                        paths: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """(settings less callables, the fingerprint of ``command``'s output): see :func:`command_output`."""
    from ..fingerprint import value_digest

    settings = {key: value for key, value in settings.items() if not callable(value)}
    counted = {key: value for key, value in settings.items() if key not in NOT_RESULTS and key not in paths}
    return settings, value_digest({"command": command, "settings": counted, "inputs": inputs})


@contextlib.contextmanager
def command_output(command: str, out: str | os.PathLike, kind: str, settings: dict[str, Any],
                   inputs: dict[str, Any], overwrite: bool = False, device: Any = None,
                   paths: tuple[str, ...] = ()) -> Iterator[CommandOutput]:
    """Hold ``OUT.lock`` and apply the existing-output rule to ``out`` (a FILE or DIRECTORY) for ``command``.

    The fingerprint is the digest of ``command``, ``settings`` (less :data:`NOT_RESULTS` and the ``paths``
    keys, whose files are in ``inputs`` by digest, so a moved input is still the same input) and ``inputs``.
    A replaced partial output is said in one line on stderr.
    """
    from ..io import output_lock, plan_output
    from ..record import run_record

    settings, fingerprint = command_fingerprint(command, settings, inputs, paths)
    with output_lock(out):
        plan = plan_output(out, kind, fingerprint, overwrite)
        if plan.notice:
            print(f"senformer {command}: {plan.notice}", file=sys.stderr)
        record = run_record(command, settings, inputs, device, fingerprint=fingerprint)
        try:
            yield CommandOutput(command, plan, record)
        except BaseException:
            _drop_empty_partial(plan)
            raise


def sharded_output(command: str, out: str | os.PathLike, settings: dict[str, Any], inputs: dict[str, Any],
                   shard: Any, overwrite: bool = False, device: Any = None, paths: tuple[str, ...] = ()):
    """:class:`senformer.shards.ShardedOutput` for shard ``shard`` of ``command``'s ``out``: the fingerprint and
    run record of :func:`command_output`, so every shard, and a merged output, match a one-process run."""
    from ..record import run_record
    from ..shards import ShardedOutput

    settings, fingerprint = command_fingerprint(command, settings, inputs, paths)
    record = run_record(command, settings, inputs, device, fingerprint=fingerprint)
    return ShardedOutput(command, out, fingerprint, record, shard, overwrite)


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--shard K/N`` and ``--threads``: one part of the work for job arrays (see :mod:`senformer.shards`)."""
    parser.add_argument("--shard", metavar="K/N",
                        help="compute part K of N (K from 0; e.g. --shard $SLURM_ARRAY_TASK_ID/"
                        "$SLURM_ARRAY_TASK_COUNT) into OUT.shards/; the shard ending last merges them into OUT. "
                        "Under torchrun it comes from RANK/WORLD_SIZE")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 gives the same bytes in any number of "
                        "processes)")


def apply_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def _drop_empty_partial(plan) -> None:
    """A run that failed before writing any result leaves no ``OUT.partial`` (only its record would be there)."""
    from ..io import DIRECTORY, FILE, RUN_RECORD, record_path

    if plan.resume or plan.up_to_date:
        return
    if plan.kind == DIRECTORY and plan.partial.is_dir():
        if [p.name for p in plan.partial.iterdir()] == [RUN_RECORD]:
            (plan.partial / RUN_RECORD).unlink()
            plan.partial.rmdir()
    elif plan.kind == FILE and not plan.partial.exists():
        record_path(plan.partial, FILE).unlink(missing_ok=True)


def add_overwrite_argument(parser: argparse.ArgumentParser,
                           help: str = "replace an existing --out written from other inputs or settings") -> None:
    """``--overwrite``: replace an existing output written from other inputs (the rule in senformer.io)."""
    parser.add_argument("--overwrite", action="store_true", help=help)
