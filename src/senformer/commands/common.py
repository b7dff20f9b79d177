"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ..config import PRESETS, EnformerConfig, preset
from ..errors import UserError
from .options import MAX_THREADS, add_attention_argument, add_set_argument, whole


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--preset/--config/--attention and sparse settings that build an EnformerConfig."""
    group = parser.add_argument_group("model")
    group.add_argument("--preset", choices=sorted(PRESETS), default="enformer", help="named configuration (default: enformer)")
    group.add_argument("--config", help="EnformerConfig JSON file (overrides the preset)")
    add_attention_argument(group, help="attention kind (default: the configuration's)")
    add_set_argument(group)


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


# Names resolved here, at the edge: data/ and weights/ below open paths only ------------------------------
def genome_path(value: str | None, progress: bool = True) -> str | None:
    """A ``--fasta``/``--genome`` value as a path: ``hg38``/``mm10`` (when no file has that name) are the
    cached bgzip copy, downloaded on first use (:func:`senformer.hub.resolve_genome`); paths stay as given."""
    from ..hub import GENOMES, resolve_genome

    if value is None or value not in GENOMES or Path(value).exists():
        return value
    return str(resolve_genome(value, progress=progress))


def weights_path(value: str | None, progress: bool = True) -> str | None:
    """A weights value as a path: ``enformer`` (when no file has that name) is the cached native copy,
    downloaded and converted on first use (:func:`senformer.hub.resolve_weights`); paths stay as given."""
    from ..hub import WEIGHTS, resolve_weights

    if value is None or value not in WEIGHTS or Path(value).exists():
        return value
    return str(resolve_weights(value, progress=progress))


def resolve_genome_options(args: argparse.Namespace) -> None:
    """``args.fasta`` and ``args.genome`` (where the command has them) through :func:`genome_path`."""
    for option in ("fasta", "genome"):
        if isinstance(getattr(args, option, None), str):
            setattr(args, option, genome_path(getattr(args, option), progress=getattr(args, "progress", True) is not False))


def config_from_args(args: argparse.Namespace) -> EnformerConfig:
    config = EnformerConfig.from_json(args.config) if getattr(args, "config", None) else preset(args.preset)
    overrides = parse_set_options(getattr(args, "set", []))
    if getattr(args, "attention", None):
        overrides["attention"] = args.attention
    if overrides:
        merged = {**config.to_dict(), **overrides}
        config = EnformerConfig.from_dict(merged)
    return config


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--shard K/N`` and ``--threads``: one part of the work for job arrays (see :mod:`senformer.outputs.shards`)."""
    parser.add_argument("--shard", metavar="K/N",
                        help="compute part K of N (K from 0; e.g. --shard $SLURM_ARRAY_TASK_ID/"
                        "$SLURM_ARRAY_TASK_COUNT) into OUT.shards/; the shard ending last merges them into OUT. "
                        "Under torchrun it comes from RANK/WORLD_SIZE")
    parser.add_argument("--threads", type=whole(1, MAX_THREADS), default=None,
                        help="torch CPU threads (default: torch's choice, one per core; idle threads sleep rather "
                        "than spin; 1 gives the same bytes in any number of processes)")


def apply_threads(threads: int | None) -> None:
    """``--threads``; None keeps torch's choice. Not the cores free now (as the demo takes): the thread count
    changes a float32 output's last bits, and a command's outputs must not depend on the machine's load (a
    resumed output would mix rows of two counts)."""
    if threads is not None:
        import torch

        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def add_overwrite_argument(parser: argparse.ArgumentParser,
                           help: str = "replace an existing --out written from other inputs or settings") -> None:
    """``--overwrite``: replace an existing output written from other inputs (the rule in senformer.outputs)."""
    parser.add_argument("--overwrite", action="store_true", help=help)


class OutputWeights:
    """The weights ``path`` (loaded with ``overrides``) as an output's fingerprint names them: ``identity``
    (:func:`senformer.outputs.weights_identity`), ``files`` (the digest of the weights files) and
    :meth:`model`, loaded at most once. A list of paths is a replicate ensemble
    (:class:`senformer.model.ensemble.Ensemble`: the mean of the models)."""

    def __init__(self, path: str | list[str], overrides: dict[str, Any], files: str, identity: dict | None,
                 model=None):
        self.path, self.overrides, self.files, self.identity, self._model = path, overrides, files, identity, model

    def load(self):
        if self._model is None:
            from ..hub import load_model

            if isinstance(self.path, str):
                self._model = load_model(self.path, overrides=self.overrides)
            else:
                from ..model.ensemble import Ensemble

                self._model = Ensemble([load_model(path, overrides=self.overrides) for path in self.path])
        return self._model


def weights_of_output(output, path: str | list[str], overrides: dict[str, Any], also: list = ()) -> OutputWeights:
    """The identity of the weights ``path`` (a list: an ensemble's members) for ``output``'s fingerprint, from the
    record of an earlier run of the same weights files (``output`` and ``also``: OUT, OUT.partial, the parts of a
    split), so that the rule runs before the model is loaded; else the model is loaded (after refusing, in one
    line, what no fingerprint can make up to date)."""
    from ..fingerprint import value_digest
    from ..inputs import weights_files_digest
    from ..outputs import known_weights, weights_identity

    files = weights_files_digest(path) if isinstance(path, str) else \
        value_digest({"ensemble": [weights_files_digest(member) for member in path]})
    records = [record for each in (output, *also) for record in each.records()]
    identity = known_weights(records, files, overrides)
    weights = OutputWeights(path, overrides, files, identity)
    if identity is None:
        for each in (output, *also):
            each.refuse_early()
        weights.identity = weights_identity(weights.load())
    return weights
