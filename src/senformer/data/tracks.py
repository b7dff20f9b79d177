"""Track tables: Basenji2 ``targets.txt``, the four assay groups of the Enformer paper (Figure 4) and RNA.

Assay group of a track, from its description (Basenji2 / Borzoi ``targets.txt``; spec section 4):

- the assay type is the prefix before the first ``:`` -- ``DNASE``, ``ATAC``, ``CHIP``, ``CAGE``, ``RNA``
  or ``GRO``;
- ``DNASE`` and ``ATAC`` form ``DNase/ATAC``; ``CAGE`` is ``CAGE``;
- ``CHIP:<target>:<biosample>`` is ``ChIP-Histone`` iff ``<target>`` starts with ``H3`` (H3K4me3, H3K27ac,
  H3F3A, H3T11ph ...), otherwise ``ChIP-TF`` (including H2A*/H2B*/H4* marks and ``.`` targets);
- ``RNA`` (Borzoi's RNA-seq: 1,543 human and 440 mouse tracks) and ``GRO`` (mouse GRO-seq, nascent RNA: 10
  tracks) form ``RNA``; Enformer's tables have neither prefix, so their groups are the paper's.

This reproduces the paper's groups exactly: human 684 DNase/ATAC, 1,860 histone, 2,131 TF, 638 CAGE.
The shipped human table (``resources/human_targets.txt.gz``) is the real 5,313-row ``targets.txt``
without its ``file`` column. Mouse ships no descriptions: its table comes from the index ranges of the
spec (DNase 0-100, ATAC 101-227, ChIP 228-1285, CAGE 1286-1642), and since the ranges cannot tell histone
from TF ChIP, those 1,058 rows are labelled ``ChIP`` until a real ``targets.txt`` is passed. Borzoi's shipped
tables (7,611 human, 2,608 mouse rows) have every description: human 906 DNase/ATAC, 1,863 histone, 2,023
TF, 1,276 CAGE, 1,543 RNA; mouse 388, 753, 297, 720 and 450.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import UserError

ASSAY_GROUPS = ("DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE")
"""The four canonical group names of the Enformer paper, used in every table, JSON file and plot."""

RNA = "RNA"
"""Group of RNA-seq (``RNA:``) and GRO-seq (``GRO:``) tracks: Borzoi's, which Enformer's tables lack."""

UNRESOLVED_CHIP = "ChIP"
"""Group of mouse ChIP tracks when no ``targets.txt`` says whether they are histone or TF."""

OTHER = "other"
"""Group of users' tracks whose description has none of the assay prefixes (e.g. ``PRO:...``)."""

GROUP_ORDER = (*ASSAY_GROUPS, RNA, UNRESOLVED_CHIP, OTHER)
"""Every group :func:`assay_group` gives, in the order tables, summaries and plots list them."""

# The description's prefix -> its group; assay_group splits ChIP into histone and TF by the target.
_ASSAY_TYPES = {"DNASE": "DNase/ATAC", "ATAC": "DNase/ATAC", "CHIP": UNRESOLVED_CHIP, "CAGE": "CAGE", "RNA": RNA,
                "GRO": RNA}

TARGETS_COLUMNS = ("index", "genome", "identifier", "file", "clip", "scale", "sum_stat", "description")
TRACK_TABLE_COLUMNS = ("index", "identifier", "description", "assay_group")

_MOUSE_RANGES = (("DNASE", 0, 101), ("ATAC", 101, 228), ("CHIP", 228, 1286), ("CAGE", 1286, 1643))


def assay_type(description: str) -> str:
    """``DNASE``, ``ATAC``, ``CHIP``, ``CAGE``, ``RNA``, ``GRO`` (the description's prefix before the first
    ``:``) or ``OTHER``."""
    prefix = str(description).split(":", 1)[0].strip().upper()
    return prefix if prefix in _ASSAY_TYPES else "OTHER"


def assay_group(description: str) -> str:
    """The assay group (one of :data:`ASSAY_GROUPS` or :data:`RNA`) of a ``targets.txt`` description, or
    :data:`OTHER` for users' tracks of other assays."""
    kind = assay_type(description)
    if kind == "OTHER":
        return OTHER
    if kind != "CHIP":
        return _ASSAY_TYPES[kind]
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


BORZOI_RESOURCES = {"human": "borzoi_targets_human.txt.gz", "mouse": "borzoi_targets_mouse.txt.gz"}
"""The shipped Borzoi track tables (:mod:`senformer.data.borzoi_targets`): 7,611 human and 2,608 mouse rows."""


@lru_cache(maxsize=None)
def _borzoi_table(head: str) -> pd.DataFrame:
    return read_targets(_resource(BORZOI_RESOURCES[head]))


def _mouse_table() -> pd.DataFrame:
    rows = []
    for kind, start, end in _MOUSE_RANGES:
        rows += [(index, f"mouse-{index}", f"{kind}:unknown", _ASSAY_TYPES[kind]) for index in range(start, end)]
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


GENERATED_GROUP = "all"
"""Assay group of every track of a generated table (a head with no table of its size)."""

_HEAD_GENOMES = {"human": 0, "mouse": 1}  # the ``genome`` column of the barnyard targets.txt


def head_track_table(
    head: str, num_tracks: int, targets: str | os.PathLike | pd.DataFrame | None = None
) -> pd.DataFrame:
    """The track table of a model head with ``num_tracks`` outputs: the one place that reads a
    ``targets.txt`` or the shipped table.

    Columns ``index`` (0..num_tracks-1, the position in the head's output), ``identifier``,
    ``description``, ``assay_group`` (plus whatever else the targets file has). The first that fits wins:

    1. ``targets`` (a ``targets.txt`` path, a dataset directory holding ``targets.txt``, or a table) when
       it has ``num_tracks`` rows; a barnyard file (a ``genome`` column with both genomes) is first
       filtered to the head (human = genome 0, mouse = genome 1);
    2. the shipped human / mouse table when it has ``num_tracks`` rows: Enformer's, or Borzoi's (7,611 /
       2,608 rows, with their ``strand_pair``, ``scale``, ``clip_soft`` and ``sum_stat`` columns);
    3. a generated table: identifier ``<head>-<index>``, description ``""``, assay group ``all``.

    ``table.attrs["source"]`` says which: ``"targets"``, ``"shipped"`` or ``"generated"`` (commands that
    were given ``--targets`` use it to reject a file of the wrong size).

    Raises:
        FileNotFoundError: ``targets`` is a path that does not exist.
        UserError: ``targets`` is not a readable targets.txt.
    """
    if num_tracks < 0:
        raise ValueError(f"num_tracks must be non-negative, got {num_tracks}")
    table = None
    source = "generated"
    if targets is not None:
        table = _targets_for_head(head, targets)
        source = "targets"
    if table is None or len(table) != num_tracks:
        table, source = None, "generated"
        if head in _HEAD_GENOMES:
            for shipped in (track_table(head), _borzoi_table(head)):
                if len(shipped) == num_tracks:
                    table, source = shipped.copy(), "shipped"
                    break
    if table is None:
        table = pd.DataFrame({
            "index": np.arange(num_tracks, dtype=np.int64),
            "identifier": [f"{head}-{position}" for position in range(num_tracks)],
            "description": [""] * num_tracks,
            "assay_group": [GENERATED_GROUP] * num_tracks,
        })
    table = table.reset_index(drop=True)
    table["identifier"] = table["identifier"].astype(str)
    table["description"] = table["description"].astype(str)
    table.attrs["source"] = source
    return table


def strand_pairs(table: pd.DataFrame, where: str | os.PathLike | None = None) -> np.ndarray | None:
    """(tracks,) the row of each track's other strand (``strand_pair``; itself when unstranded), or None when
    ``table`` has no such column or no stranded track (then a reverse-complement pass reads the same tracks).

    Raises:
        UserError: a value that is no row number, or a pair that does not swap back (the column must be a
            permutation of the rows that is its own inverse): one line naming ``where`` (the table's file)
            and the row (0-based: the track's position in the head).
    """
    if "strand_pair" not in table.columns:
        return None
    prefix = f"{where}: " if where is not None else ""
    count = len(table)
    values = pd.to_numeric(table["strand_pair"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~((values >= 0) & (values < count) & (values == np.round(values)))  # NaN is bad too
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"{prefix}row {row} (track {table['identifier'].iloc[row]!r}) has strand_pair="
                        f"{table['strand_pair'].iloc[row]!r}; expected a row number 0..{count - 1}")
    pairs = values.astype(np.int64)
    if (pairs[pairs] != np.arange(count)).any():
        row = int(np.flatnonzero(pairs[pairs] != np.arange(count))[0])
        raise UserError(f"{prefix}row {row} (track {table['identifier'].iloc[row]!r}) pairs with row {pairs[row]}, "
                        "which does not pair back with it (strand_pair must swap + and - tracks two by two)")
    return None if (pairs == np.arange(count)).all() else pairs


@lru_cache(maxsize=None)
def shipped_strand_pairs(head: str, num_tracks: int) -> np.ndarray | None:
    """:func:`strand_pairs` of the shipped table :func:`head_track_table` gives a head of ``num_tracks``
    tracks without a targets file (cached: every batch of a prediction asks)."""
    pairs = strand_pairs(head_track_table(head, num_tracks))
    if pairs is not None:
        pairs.flags.writeable = False
    return pairs


def _targets_for_head(head: str, targets: str | os.PathLike | pd.DataFrame) -> pd.DataFrame | None:
    """The rows of ``targets`` that belong to ``head``, as a :func:`track_table`; ``None`` for a directory
    without ``targets.txt`` (a dataset need not name its tracks)."""
    if isinstance(targets, pd.DataFrame):
        table = targets.copy()
    else:
        path = Path(targets)
        if path.is_dir():
            path = path / "targets.txt"
            if not path.is_file():
                return None
        table = read_targets(path)
    if "genome" in table.columns and table["genome"].nunique() > 1 and head in _HEAD_GENOMES:
        table = table[table["genome"].astype(int) == _HEAD_GENOMES[head]]
    return track_table(head, targets=table.reset_index(drop=True))


# The --tracks grammar ------------------------------------------------------------------------------------
TRACKS_GRAMMAR = (
    "tracks to use, one or more values; each value is tried in order as an index or inclusive-range list "
    "('0,5,10-19'), an exact identifier ('ENCFF833POA'), an exact description "
    "('CAGE:chronic myelogenous leukemia cell line:K562'), "
    "else a case-insensitive regular expression searched in identifiers and descriptions ('CAGE.*K562'); "
    "the selection is the union in head order; a value that selects nothing is an error"
)
"""The one description of the ``--tracks`` grammar (the CLI's help text; :func:`select_tracks` documents it)."""

_INDEX_LIST = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


def select_tracks(
    values: str | int | Sequence[str | int] | None, table: pd.DataFrame, head: str | None = None
) -> np.ndarray:
    """Positions (int64, ascending) of the tracks of ``table`` chosen by ``values``: the ``--tracks`` grammar.

    ``values`` is ``None`` or empty (every track), one value (a ``str`` or ``int``) or a list/tuple of
    values. Each value is tried in order as

    1. an index or inclusive-range list, ``"7"``, ``"0,5,10-19"`` (an out-of-range index is an error naming
       the value and the valid range);
    2. an exact identifier (``"ENCFF833POA"``);
    3. an exact description (``"DNASE:K562"``; every track with it);
    4. else a case-insensitive regular expression searched in identifier and description (``"cage.*k562"``).

    The selection is the union of the values' tracks in table (head) order, without duplicates.

    Args:
        table: a head's track table (:func:`head_track_table`): columns ``identifier``, ``description``;
            row ``i`` is output position ``i``.
        head: named in error messages.
    Raises:
        UserError: a value selects nothing, or an index is out of range.
    """
    count = len(table)
    values = _as_values(values)
    if not values:
        return np.arange(count, dtype=np.int64)
    chosen = np.zeros(count, dtype=bool)
    for value in values:
        selected = _match(value, table)
        if isinstance(selected, str):
            raise UserError(selected + _of_head(head, count))
        chosen |= selected
    return np.flatnonzero(chosen).astype(np.int64)


def select_tracks_per_head(
    values: str | int | Sequence[str | int] | None, tables: dict[str, pd.DataFrame]
) -> dict[str, np.ndarray]:
    """:func:`select_tracks` for several heads at once (``predict`` of a multi-head model).

    A value is an error only when it selects nothing in every head (an index list selects nothing in a head
    where one of its indices is out of range); heads whose selection is empty are left out of the result,
    in ``tables`` order.
    """
    values = _as_values(values)
    if not values:
        return {head: np.arange(len(table), dtype=np.int64) for head, table in tables.items()}
    chosen = {head: np.zeros(len(table), dtype=bool) for head, table in tables.items()}
    for value in values:
        reasons = []
        for head, table in tables.items():
            selected = _match(value, table)
            if isinstance(selected, str):
                reasons.append(selected + _of_head(head, len(table)))
            else:
                chosen[head] |= selected
        if len(reasons) == len(tables):
            raise UserError(reasons[0] if len(reasons) == 1 else "; ".join(reasons))
    return {head: np.flatnonzero(mask).astype(np.int64) for head, mask in chosen.items() if mask.any()}


def _as_values(values) -> list[str]:
    if values is None:
        return []
    if isinstance(values, (str, int, np.integer)):
        values = [values]
    texts = [str(value).strip() for value in values]
    return [text for text in texts if text]


def _match(value: str, table: pd.DataFrame) -> np.ndarray | str:
    """Boolean mask of the rows ``value`` selects, or the reason it selects none (an error message)."""
    count = len(table)
    if _INDEX_LIST.match(value):
        mask = np.zeros(count, dtype=bool)
        for part in value.split(","):
            first, _, last = part.partition("-")
            low, high = int(first), int(last or first)
            if low > high:
                return f"track range {part.strip()!r} in --tracks {value!r} runs backwards"
            if high >= count:
                return f"track {part.strip()!r} is out of range: not within 0..{count - 1}"
            mask[low:high + 1] = True
        return mask
    identifiers = table["identifier"].astype(str).to_numpy()
    descriptions = table["description"].astype(str).to_numpy()
    for column in (identifiers, descriptions):
        mask = column == value
        if mask.any():
            return mask
    try:
        pattern = re.compile(value, re.IGNORECASE)
    except re.error as error:
        return (f"no track matches {value!r}: it is no index, identifier or description, nor a valid regular "
                f"expression ({error})")
    mask = np.fromiter((bool(pattern.search(a) or pattern.search(b)) for a, b in zip(identifiers, descriptions)),
                       dtype=bool, count=count)
    if not mask.any():
        return f"no track matches {value!r}: it is no index, identifier or description, nor a pattern found in them"
    return mask


def _of_head(head: str | None, count: int) -> str:
    return f" (the {count:,} tracks of head {head!r})" if head else f" (the {count:,} tracks)"


def group_counts(table: pd.DataFrame) -> dict[str, int]:
    """Tracks per assay group in :data:`GROUP_ORDER`: the four of :data:`ASSAY_GROUPS` always, ``RNA``, ``ChIP``
    and ``other`` when present."""
    counts = table["assay_group"].value_counts()
    names = list(ASSAY_GROUPS) + [name for name in GROUP_ORDER[len(ASSAY_GROUPS):] if name in counts]
    return {name: int(counts.get(name, 0)) for name in names}
