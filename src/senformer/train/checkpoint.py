"""Training checkpoints: everything needed to continue a run exactly, written atomically, the last K kept.

A checkpoint holds the model (our parameter names), optimizer, scheduler, step, the data position of every
head, the RNG states of every rank, the EnformerConfig and the training settings. It is a ``torch.save``
file written to a temporary name and renamed, so a crash never leaves a truncated ``step-*.pt``.

Loading never runs code: a checkpoint holds only tensors and plain containers (dict, list, tuple, str,
numbers, None), so it is read with ``torch.load(weights_only=True)``, which refuses any pickled object.
The RNG states are stored in that form too (:func:`rng_state`): numpy's key and Python's Mersenne Twister
state as int64 tensors. Checkpoints of format version 1 pickled numpy arrays and are refused.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_path, load_torch_file
from ..outputs import writing
from ..outputs.faults import GuardedFile

FORMAT = "senformer-train-checkpoint"
VERSION = 2  # 2: RNG states as tensors, loadable with weights_only=True
_NAME = re.compile(r"^step-(\d{8})\.pt$")
# atomic_path's temporary name for a checkpoint being written; a killed save leaves one behind.
_PARTIAL = re.compile(r"^\.step-\d{8}\.pt\..+\.partial$")

# Settings that may change on resume without changing the run's meaning (bookkeeping, not maths).
RESUMABLE_CHANGES = frozenset({
    "steps", "eval_every", "eval_examples", "eval_batch_size", "log_every", "checkpoint_every",
    "keep_checkpoints", "progress", "device", "threads", "decay", "final_lr_factor", "eval_split", "deterministic",
})


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step a ``step-XXXXXXXX.pt`` file (:func:`checkpoint_name`) holds, read from its name."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named like a checkpoint (step-XXXXXXXX.pt)")
    return int(match.group(1))


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if _NAME.match(path.name))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """Every global generator a training step draws from (dropout, numpy/python for user code), as tensors
    and plain values so that the checkpoint loads with ``weights_only=True``."""
    bit_generator, key, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": str(bit_generator), "key": torch.from_numpy(key.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["bit_generator"], numpy_state["key"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(int(v) for v in python_state["internal"].tolist()),
                     python_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | os.PathLike, step: int, payload: Mapping[str, Any], keep: int) -> Path:
    """Write ``payload`` (plus format tags) as ``step-XXXXXXXX.pt`` atomically, then keep only the last ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint_name(step)
    with writing(target, f"the checkpoint of step {step}"), atomic_path(target) as temporary:
        with GuardedFile(temporary, "w+b") as handle:  # torch.save's own writer loses the failure's errno
            torch.save({"format": FORMAT, "version": VERSION, "step": step, **payload}, handle)
            handle.raise_fault()
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with one clear line for anything else.

    Only tensors and plain containers are unpickled (``weights_only=True``): a file that holds any other
    object, a crafted one included, is refused before anything in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    payload = load_torch_file(path, "training checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a senformer training checkpoint")
    if payload.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {payload.get('version')} is not {VERSION}")
    return payload


def remove_stale_partials(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of checkpoint saves that were killed (each as large as a checkpoint).

    Call only while holding the run folder's lock (:class:`senformer.outputs.Output`): a live run writing a
    checkpoint holds that lock, so no file removed here belongs to a running process.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = [path for path in directory.iterdir() if _PARTIAL.match(path.name)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def check_compatible(path: Path, payload: Mapping[str, Any], config: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Raise a UserError naming every field where the checkpoint's run differs from this one."""
    differences = []
    stored_config = payload.get("config", {})
    for key in sorted(set(stored_config) | set(config)):
        if key in ("checkpoint_transformer", "checkpoint_conv_tower", "conv_tile_length"):
            continue  # memory switches: same maths
        if stored_config.get(key) != config.get(key):
            differences.append(f"config.{key}: checkpoint {stored_config.get(key)!r}, now {config.get(key)!r}")
    stored_settings = payload.get("settings", {})
    for key in sorted(set(stored_settings) | set(settings)):
        if key in RESUMABLE_CHANGES or key in ("init_weights", "teacher", "data", "genome", "model_config", "preset",
                                                "attention", "model_overrides", "checkpoint_activations",
                                                "checkpoint_conv_tower"):
            continue  # paths may move: inputs.json compares the files' digests, the config the model itself
        if stored_settings.get(key) != settings.get(key):
            differences.append(f"{key}: checkpoint {stored_settings.get(key)!r}, now {settings.get(key)!r}")
    if (stored_settings.get("teacher") is None) != (settings.get("teacher") is None):
        differences.append(f"teacher: checkpoint {stored_settings.get('teacher')!r}, now {settings.get('teacher')!r}")
    if differences:
        raise UserError(f"{path} comes from a different run: " + "; ".join(differences))


# The inputs a run started from --------------------------------------------------------------------------
INPUTS_NAME = "inputs.json"


def training_inputs(settings: Mapping[str, Any], data_given: bool = False) -> dict[str, Any]:
    """Digests of what a run learns from: each head's dataset, genome FASTA, ``init_weights`` and ``teacher``.

    Datasets: statistics.json and targets.txt by every byte, TFRecords by every byte up to 256 MiB and above
    that by size plus first and last MiB (:func:`senformer.inputs.large_file_digest`): training data reaches
    hundreds of GB, which a resume should not reread, and its records are ZLIB-compressed with CRCs, so a
    regenerated or edited file changes its size or its last bytes. Genomes: every byte up to 256 MiB, else
    size, first/last MiB and the ``.fai`` (every name, length and line layout). Weights: every byte of every
    file. Paths are not recorded here, so moved inputs resume. ``data_given``: in-memory data, not digested.
    """
    from ..inputs import dataset_digest, large_file_digest, weights_files_digest

    splits = [settings.get("train_split", "train"), settings.get("eval_split", "valid")]
    inputs: dict[str, Any] = {}
    if not data_given:
        for head, directory in sorted(dict(settings.get("data") or {}).items()):
            inputs[f"dataset {head}"] = dataset_digest(directory, splits[:1], sampled=True)
    for head, fasta in sorted(dict(settings.get("genome") or {}).items()):
        inputs[f"genome {head}"] = large_file_digest(fasta)
    for key, what in (("init_weights", "init weights"), ("teacher", "teacher weights")):
        if settings.get(key):
            inputs[what] = weights_files_digest(settings[key])
    return inputs


def check_inputs(out_dir: Path, inputs: Mapping[str, Any]) -> None:
    """On resume: the inputs recorded at the start (``inputs.json``) must equal ``inputs``; one line naming
    what changed otherwise. A run folder from before this record gets one now."""
    import json

    from ..io import write_json

    path = Path(out_dir) / INPUTS_NAME
    if not path.is_file():
        write_json(path, dict(inputs))
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not readable JSON ({error}); it records the inputs this run started from") from None
    changed = [name for name in sorted(set(recorded) | set(inputs)) if recorded.get(name) != inputs.get(name)]
    if changed:
        details = ", ".join(f"{name} {'added' if name not in recorded else 'removed' if name not in inputs else 'changed'}"
                            for name in changed)
        raise UserError(f"--resume: the inputs differ from those this run started from ({details}; recorded in "
                        f"{path}): resume only with the same data, genome and weights, or start a new --out")
