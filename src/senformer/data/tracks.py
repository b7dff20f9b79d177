"""Track tables: Basenji2 ``targets.txt`` and the four assay groups of the Enformer paper (Figure 4).

Assay group of a track, from its description (Basenji2 ``targets.txt``; spec section 4):

- the assay type is the prefix before the first ``:`` -- ``DNASE``, ``ATAC``, ``CHIP`` or ``CAGE``;
- ``DNASE`` and ``ATAC`` form ``DNase/ATAC``; ``CAGE`` is ``CAGE``;
- ``CHIP:<target>:<biosample>`` is ``ChIP-Histone`` iff ``<target>`` starts with ``H3`` (H3K4me3, H3K27ac,
  H3F3A, H3T11ph ...), otherwise ``ChIP-TF`` (including H2A*/H2B*/H4* marks and ``.`` targets).

This reproduces the paper's groups exactly: human 684 DNase/ATAC, 1,860 histone, 2,131 TF, 638 CAGE.
The shipped human table (``resources/human_targets.txt.gz``) is the real 5,313-row ``targets.txt``
without its ``file`` column. Mouse ships no descriptions: its table comes from the index ranges of the
spec (DNase 0-100, ATAC 101-227, ChIP 228-1285, CAGE 1286-1642), and since the ranges cannot tell histone
from TF ChIP, those 1,058 rows are labelled ``ChIP`` until a real ``targets.txt`` is passed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import UserError

ASSAY_GROUPS = ("DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE")
"""The four canonical group names, used in every table, JSON file and plot."""

UNRESOLVED_CHIP = "ChIP"
"""Group of mouse ChIP tracks when no ``targets.txt`` says whether they are histone or TF."""

OTHER = "other"
"""Group of users' tracks whose description has none of the four assay prefixes (e.g. ``RNA:...``)."""

TARGETS_COLUMNS = ("index", "genome", "identifier", "file", "clip", "scale", "sum_stat", "description")
TRACK_TABLE_COLUMNS = ("index", "identifier", "description", "assay_group")

_MOUSE_RANGES = (("DNASE", 0, 101), ("ATAC", 101, 228), ("CHIP", 228, 1286), ("CAGE", 1286, 1643))


def assay_type(description: str) -> str:
    """``DNASE``, ``ATAC``, ``CHIP``, ``CAGE`` (the description's prefix before the first ``:``) or ``OTHER``."""
    prefix = str(description).split(":", 1)[0].strip().upper()
    return prefix if prefix in ("DNASE", "ATAC", "CHIP", "CAGE") else "OTHER"


def assay_group(description: str) -> str:
    """The canonical assay group (one of :data:`ASSAY_GROUPS`) of a ``targets.txt`` description, or
    :data:`OTHER` for users' tracks of other assays."""
    kind = assay_type(description)
    if kind == "OTHER":
        return OTHER
    if kind in ("DNASE", "ATAC"):
        return "DNase/ATAC"
    if kind == "CAGE":
        return "CAGE"
    parts = str(description).split(":")
    target = parts[1].strip() if len(parts) > 1 else ""
    return "ChIP-Histone" if target.upper().startswith("H3") else "ChIP-TF"


def read_targets(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Basenji ``targets.txt`` (tab separated, header line) and add an ``assay_group`` column.

    Columns: ``index`` (global; mouse rows start at 5,313 in the barnyard data), ``genome``, ``identifier``,
    ``file``, ``clip``, ``scale``, ``sum_stat``, ``description``, ``assay_group``; the row order is the track
    order of the TFRecord targets. The ``file`` column may be absent (the shipped table).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"targets file not found: {path}")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"identifier": str, "description": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a tab-separated targets.txt ({error})") from None
    if table.columns[0].startswith("Unnamed") or table.columns[0] == "":
        table = table.rename(columns={table.columns[0]: "index"})  # basenji writes an unnamed index column
    missing = [column for column in ("index", "identifier", "description") if column not in table.columns]
    if missing:
        raise UserError(f"{path}: targets.txt lacks column(s) {', '.join(missing)}; it has {', '.join(table.columns)}")
    table["assay_group"] = [assay_group(description) for description in table["description"]]
    return table


def _resource(name: str) -> Path:
    return Path(str(resources.files("senformer") / "resources" / name))


@lru_cache(maxsize=None)
def _human_table() -> pd.DataFrame:
    return read_targets(_resource("human_targets.txt.gz"))


def _mouse_table() -> pd.DataFrame:
    rows = []
    for kind, start, end in _MOUSE_RANGES:
        group = {"DNASE": "DNase/ATAC", "ATAC": "DNase/ATAC", "CAGE": "CAGE", "CHIP": UNRESOLVED_CHIP}[kind]
        rows += [(index, f"mouse-{index}", f"{kind}:unknown", group) for index in range(start, end)]
    return pd.DataFrame(rows, columns=list(TRACK_TABLE_COLUMNS))


def track_table(head: str = "human", targets: str | os.PathLike | pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-track table with columns ``index, identifier, description, assay_group`` (plus any others the
    targets file has). ``index`` is the position in the model head's output (0-based, per head).

    Args:
        head: ``"human"`` (5,313 tracks, shipped) or ``"mouse"`` (1,643, from index ranges; ChIP rows are
            :data:`UNRESOLVED_CHIP` unless ``targets`` is given).
        targets: a ``targets.txt`` path or a table from :func:`read_targets`; overrides the shipped table.
    """
    if targets is not None:
        table = targets.copy() if isinstance(targets, pd.DataFrame) else read_targets(targets)
        if "assay_group" not in table.columns:
            table["assay_group"] = [assay_group(d) for d in table["description"]]
        table = table.reset_index(drop=True)
        table["index"] = range(len(table))  # output position in the head; barnyard mouse indices start at 5,313
        return table
    if head == "human":
        table = _human_table().copy()
    elif head == "mouse":
        table = _mouse_table()
    else:
        raise ValueError(f"no shipped track table for head {head!r}; pass targets=targets.txt (human, mouse ship)")
    return table


def group_counts(table: pd.DataFrame) -> dict[str, int]:
    """Tracks per assay group, in :data:`ASSAY_GROUPS` order (plus ``ChIP`` and ``other`` when present)."""
    counts = table["assay_group"].value_counts()
    names = list(ASSAY_GROUPS) + [name for name in (UNRESOLVED_CHIP, OTHER) if name in counts]
    return {name: int(counts.get(name, 0)) for name in names}


def write_human_resource(csv_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Rebuild ``resources/human_targets.txt.gz`` from the shared ``human_tracks_assay_types.csv``."""
    import gzip

    from ..io import atomic_write_bytes

    table = pd.read_csv(csv_path, keep_default_na=False)
    columns = [c for c in TARGETS_COLUMNS if c != "file"]
    text = table[columns].to_csv(sep="\t", index=False)
    atomic_write_bytes(out_path, gzip.compress(text.encode("utf-8"), 9, mtime=0))
