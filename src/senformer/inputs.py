"""Digests of input files, taken before anything is loaded: weights files, datasets, FASTA, BED, bigWig.

The existing-output rule (:mod:`senformer.io`) and ``train --resume`` compare them; every digest is of bytes
and relative names, never of paths, so moving an input changes nothing and changing one byte is seen (files
above :data:`SAMPLED_ABOVE` are identified by size, first and last MiB and FASTA index: see
:func:`large_file_digest`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SAMPLED_ABOVE = 256 << 20  # files larger than this are identified by size, .fai and sampled bytes


def weights_files_digest(name_or_path: str) -> str:
    """SHA-256 of every file of a weights path (file, folder or TF checkpoint prefix), read without loading
    the model, so the existing-output rule runs before the model is loaded. Paths may move: only relative
    names and bytes count."""
    from .fingerprint import combine, file_digest
    from .hub import WEIGHTS, resolve_weights

    path = Path(name_or_path).expanduser()
    if not path.exists() and not Path(f"{path}.index").is_file():
        if os.fspath(name_or_path) not in WEIGHTS:
            raise FileNotFoundError(f"no such weights file or directory: {path} (the official weights: "
                                    "`senformer download enformer`, then --weights enformer)")
        path = Path(resolve_weights(name_or_path))
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        return folder_digest(path)
    files = sorted(path.parent.glob(path.name + ".*"))  # a TF checkpoint prefix: PREFIX.index, PREFIX.data-*
    return combine({p.name[len(path.name):]: file_digest(p) for p in files if p.is_file()})


def folder_digest(path: str | os.PathLike) -> str:
    """SHA-256 of every file under a folder (hidden files, locks and partial files apart), by relative name."""
    from .fingerprint import combine, file_digest

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and not p.name.endswith((".lock", ".partial")))
    return combine({str(p.relative_to(path)): file_digest(p) for p in files})


def large_file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes; above :data:`SAMPLED_ABOVE`, of its size, its first and last MiB and its
    ``.fai`` index when there is one (a genome FASTA: the index fixes every name, length and line layout).

    Why not always every byte: hashing a 3 GB genome before each run costs more than many runs; the rows
    that read a genome also record the exact bases they used (``predict``), which catches edits inside it.
    """
    from .fingerprint import file_digest, value_digest

    path = Path(path)
    size = path.stat().st_size
    if size <= SAMPLED_ABOVE:
        return file_digest(path)
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
        handle.seek(size - (1 << 20))
        tail = handle.read()
    index = Path(f"{path}.fai")
    return value_digest({"size": size, "head": hashlib.sha256(head).hexdigest(),
                         "tail": hashlib.sha256(tail).hexdigest(),
                         "fai": file_digest(index) if index.is_file() else None})


def dataset_digest(folder: str | os.PathLike, splits: list[str] | None = None, sampled: bool = False) -> str:
    """A Basenji2-layout dataset: statistics.json, targets.txt and each TFRecord of ``splits`` (all when
    None). ``sampled``: TFRecords by size and first/last MiB only (training data can be hundreds of GB)."""
    from .fingerprint import combine, file_digest
    from .outputs import refuse_unfinished

    folder = Path(folder)
    refuse_unfinished(folder, "the dataset")  # a partial dataset lacks records: never scored or trained on
    parts: dict[str, str] = {}
    for name in ("statistics.json", "targets.txt"):
        if (folder / name).is_file():
            parts[name] = file_digest(folder / name)
    records = sorted((folder / "tfrecords").glob("*.tfr")) if (folder / "tfrecords").is_dir() else []
    for path in records:
        if splits is None or path.name.split("-")[0] in splits:
            parts[f"tfrecords/{path.name}"] = large_file_digest(path) if sampled else file_digest(path)
    return combine(parts)


def input_digest(path: str | os.PathLike | None) -> str | None:
    """A data file (BED, VCF, FASTA of sequences, targets.txt): :func:`large_file_digest`, or None when absent."""
    return None if path is None else large_file_digest(path)
