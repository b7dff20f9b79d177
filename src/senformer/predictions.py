"""Reading what ``senformer predict`` wrote: one region's tracks in memory (strings as ``str``), and its figure.

The HDF5 layout is :mod:`senformer.predict`'s (its module docstring); this is its one reader, used by
``senformer plot`` and by notebooks::

    >>> from senformer.predictions import read_prediction
    >>> hbb = read_prediction("hbb.h5", region="chr11:5,225,000-5,230,000", tracks=["CAGE.*K562"])
    >>> hbb.values["human"].shape, hbb.positions[:2]        # (bins, tracks), bin starts in genome bp
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data.genome import Interval, parse_region
from .data.tracks import select_tracks_per_head
from .errors import UserError
from .outputs import first_non_finite


UNITS_MODEL = "model output"
UNITS_SCALED_COVERAGE = "coverage x scale"  # calico's untransform_preds1 default: each track's scale kept
UNITS_COVERAGE = "coverage"


def units_of(coverage: bool, unscale: bool) -> str:
    """What stored values are: the model's output, or the squashed scale undone (with or without the scale)."""
    if unscale and not coverage:
        raise UserError("--unscale applies to --coverage (the squashed scale undone); pass both")
    return UNITS_COVERAGE if unscale else UNITS_SCALED_COVERAGE if coverage else UNITS_MODEL


@dataclass(frozen=True)
class RegionPrediction:
    """The predicted tracks of one region.

    Attributes:
        region: the region as given to ``predict`` (name included).
        bins_start: genome coordinate of the first bin; bin ``k`` covers
            ``[bins_start + k * bin_size, bins_start + (k + 1) * bin_size)``.
        values: ``{head: (bins, tracks) float32}`` for the chosen heads and tracks.
        tracks: ``{head: DataFrame}`` with ``index`` (position in the model's head), ``identifier``,
            ``description``, ``assay_group``, one row per column of ``values[head]``; a Borzoi head's also
            ``strand_pair`` (the head position of the track's other strand; its own when unstranded) and
            ``clip_soft``, ``scale``, ``sum_stat`` (its squashed scale).
        units: what ``values`` are: ``model output``, ``coverage x scale`` (the squashed scale undone,
            calico's default) or ``coverage`` (its scale divided out too).
    """

    region: Interval
    bins_start: int
    bin_size: int
    values: dict[str, np.ndarray]
    tracks: dict[str, pd.DataFrame]
    units: str = UNITS_MODEL

    @property
    def positions(self) -> np.ndarray:
        """Start coordinate of each bin, ``(bins,)``."""
        bins = len(next(iter(self.values.values()))) if self.values else 0
        return self.bins_start + self.bin_size * np.arange(bins)


def hdf5_strings(values) -> list[str]:
    """A string dataset of a prediction file as ``str``: h5py reads its utf-8 strings back as ``bytes``."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _open(path: Path):
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"no such prediction file: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path}: not an HDF5 file written by senformer predict ({error})") from None
    if "regions" not in handle:
        handle.close()
        raise UserError(f"{path}: not a senformer predict output (no /regions group)")
    return handle


def list_regions(path: str | os.PathLike) -> pd.DataFrame:
    """One row per region of a prediction file: ``chrom, start, end, name, bins_start, num_bins``."""
    with _open(Path(path)) as handle:
        group = handle["regions"]
        return pd.DataFrame({"chrom": hdf5_strings(group["chrom"][:]), "start": group["start"][:], "end": group["end"][:],
                             "name": hdf5_strings(group["name"][:]), "bins_start": group["bins_start"][:],
                             "num_bins": group["num_bins"][:]})


def _region_row(regions: pd.DataFrame, region: str | int | None, path: Path) -> int:
    """The row of ``region``: a row number, a region name, or ``chr:start-end`` (the region that overlaps it
    most); None is the first region."""
    if region is None:
        return 0
    if isinstance(region, (int, np.integer)) or (isinstance(region, str) and region.strip().isdigit()):
        row = int(region)
        if not 0 <= row < len(regions):
            raise UserError(f"{path} holds {len(regions)} regions (0..{len(regions) - 1}); there is no region {row}")
        return row
    names = regions.index[regions["name"] == region]
    if len(names):
        return int(names[0])
    wanted = parse_region(region)
    overlap = (np.minimum(regions["end"], wanted.end) - np.maximum(regions["start"], wanted.start)).where(
        regions["chrom"] == wanted.chrom, -1)
    if overlap.max() <= 0:
        raise UserError(f"{path} holds no region named or overlapping {region!r}")
    return int(overlap.idxmax())


def read_prediction(path: str | os.PathLike, region: str | int | None = None, heads=None, tracks=None,
                    coverage: bool = False, unscale: bool = False) -> RegionPrediction:
    """One region of a ``senformer predict`` output in memory; a row that was never computed (past the
    file's ``completed`` rows, or holding its NaN fill) is refused in one :class:`UserError` line.

    Args:
        region: a row number, a region name or ``chr:start-end`` (the stored region overlapping it most);
            default the first region.
        heads: heads to read (default all in the file).
        tracks: ``--tracks`` values among the file's tracks of each head
            (:func:`senformer.data.tracks.select_tracks_per_head`: a value must select something in some head;
            heads where nothing is selected are left out).
        coverage: the values in the experiments' units: a file of model outputs of a Borzoi head (its track
            table's squashed scale stored) is undone as ``predict --coverage`` does, from its float16 values;
            a file written with ``--coverage`` is read as it is. ``unscale``: divide out each track's scale too.
    """
    from .data.borzoi_targets import undo_squashed_scale

    path = Path(path)
    wanted = units_of(coverage, unscale)
    regions = list_regions(path)
    row = _region_row(regions, region, path)
    with _open(path) as handle:
        stored = [name for name in handle if name not in ("regions", "embeddings")]
        chosen_heads = list(heads) if heads else stored
        unknown = [head for head in chosen_heads if head not in stored]
        if unknown:
            raise UserError(f"{path} has no head {', '.join(unknown)} (it has {', '.join(stored)})")
        tables = {}
        for head in chosen_heads:
            group = handle[head]
            tables[head] = pd.DataFrame({"index": group["tracks/index"][:], **{
                column: hdf5_strings(group[f"tracks/{column}"][:]) for column in ("identifier", "description", "assay_group")}})
            for column in ("strand_pair", "clip_soft", "scale", "sum_stat"):
                if column in group["tracks"]:
                    stored_column = group[f"tracks/{column}"][:]
                    tables[head][column] = hdf5_strings(stored_column) if column == "sum_stat" else stored_column
        selections = select_tracks_per_head(tracks, tables)  # a value must select something in some head
        count = int(regions.loc[row, "num_bins"])
        completed = int(handle.attrs.get("completed", len(regions)))
        if row >= completed:
            raise UserError(f"{path}: region {regions.loc[row, 'name']} (row {row}) was never computed: the file "
                            f"holds {completed} of its {len(regions)} rows (an unfinished or damaged run)")
        values = {head: handle[head]["predictions"][row, :count][:, columns].astype(np.float32)
                  for head, columns in selections.items()}
        for head, value in values.items():
            missing = first_non_finite(value)
            if missing is not None:  # a row never written holds the file's NaN fill, never a prediction
                identifier = tables[head].iloc[selections[head][missing[1]]]["identifier"]
                raise UserError(f"{path}: region {regions.loc[row, 'name']} has no finite prediction for head "
                                f"{head} track {identifier} at bin {missing[0]}: the row was never computed (an "
                                "unfinished or damaged file)")
        tables = {head: tables[head].iloc[columns].reset_index(drop=True) for head, columns in selections.items()}
        bin_size = int(handle.attrs["bin_size"])
        units = str(handle.attrs.get("units", UNITS_MODEL))
    if coverage and units != wanted:
        if units != UNITS_MODEL:
            raise UserError(f"{path} holds {units}, not {wanted}: predict it again with the options you want")
        for head, table in tables.items():
            if "scale" not in table.columns:
                raise UserError(f"{path}: head {head}'s tracks have no squashed scale (scale, clip_soft, sum_stat of a "
                                "Borzoi track table): its values are the model's output, with nothing to undo")
            values[head] = undo_squashed_scale(values[head], table, unscale=unscale).astype(np.float32)
        units = wanted
    stored_region = regions.loc[row]
    interval = Interval(stored_region["chrom"], int(stored_region["start"]), int(stored_region["end"]), stored_region["name"])
    return RegionPrediction(interval, int(stored_region["bins_start"]), bin_size, values, tables, units)



def plot_region(path: str | os.PathLike, out: str | os.PathLike, region: str | int | None = None, heads=None,
                tracks=None, experiments: dict[str, str] | None = None, width: float = 10.0, coverage: bool = False,
                unscale: bool = False, gtf: str | os.PathLike | None = None) -> Path:
    """Draw one region of a prediction file into ``out`` (PNG or PDF by suffix, written atomically): one
    panel per chosen track (a stranded pair whose two strands are both chosen shares one panel, ``+`` above
    and ``-`` mirrored below), then one per experiment bigWig (``{label: file}``) averaged over the same
    bins. The y-axes name the values' units (``coverage``, ``unscale``: as :func:`read_prediction`); the region
    asked for is shaded where the output window is wider, and ``gtf`` adds a panel of its genes."""
    from matplotlib.figure import Figure

    from .data.bigwig import binned_signal
    from .io import save_figure
    from .plots import gene_annotation, genome_track, mark_region, stranded_track

    prediction = read_prediction(path, region, heads, tracks, coverage=coverage, unscale=unscale)
    panels = [(head, rows) for head, table in prediction.tracks.items() for rows in track_panels(table)]
    experiments = experiments or {}
    genes = None
    if gtf is not None:
        from .data.gtf import read_gtf

        genes = read_gtf(gtf)
    count = len(panels) + len(experiments) + (genes is not None)
    if len(panels) > 40:
        raise UserError(f"{len(panels)} track panels chosen: draw at most 40 at a time (choose them with --tracks)")
    figure = Figure(figsize=(width, 0.9 + 0.75 * count), layout="constrained")
    axes = figure.subplots(count, 1, sharex=True, squeeze=False)[:, 0]
    positions, size = prediction.positions, prediction.bin_size
    for ax, (head, rows) in zip(axes, panels):
        table = prediction.tracks[head].iloc[list(rows)]
        first = table.iloc[0]
        if len(rows) == 2:
            names = " / ".join(table["identifier"])
            label = f"{names}: {first['description']}" if first["description"] else names
            stranded_track(ax, positions, prediction.values[head][:, rows[0]], prediction.values[head][:, rows[1]],
                           size, label, ylabel=prediction.units)
        else:
            label = f"{first['identifier']}: {first['description']}" if first["description"] else first["identifier"]
            genome_track(ax, positions, prediction.values[head][:, rows[0]], size, label, ylabel=prediction.units)
    region_ = prediction.region
    for ax, (label, file) in zip(axes[len(panels):], experiments.items()):
        signal = binned_signal(file, region_.chrom, prediction.bins_start, len(positions), size)
        genome_track(ax, positions, signal, size, f"experiment {label}", experiment=True, ylabel="signal (bigWig)")
    window = (int(positions[0]), int(positions[-1]) + size) if len(positions) else (region_.start, region_.end)
    if genes is not None:
        gene_annotation(axes[-1], [g for g in genes if g.chrom == region_.chrom], *window)
    if region_.start > window[0] or region_.end < window[1]:
        for ax in axes[: len(panels) + len(experiments)]:
            mark_region(ax, max(region_.start, window[0]), min(region_.end, window[1]), label=None)
        axes[0].text(0.995, 1.02, f"shaded: {region_}, the region asked for", transform=axes[0].transAxes,
                     fontsize=6, ha="right", va="bottom")
    axes[-1].set_xlabel(f"{region_.chrom} position (bp), {size}-bp bins", fontsize=8)
    title = f"{region_.name + ': ' if region_.name else ''}{region_} ({Path(path).name})"
    figure.suptitle(title, fontsize=9)
    return save_figure(out, figure, dpi=130)


def track_panels(table: pd.DataFrame) -> list[tuple[int, ...]]:
    """The rows of a region's track table drawn in each panel, in table order: ``(plus, minus)`` for a
    stranded pair whose two strands are both chosen (``strand_pair`` names the other's head position), else
    ``(row,)``."""
    if "strand_pair" not in table.columns:
        return [(row,) for row in range(len(table))]
    row_of = {int(index): row for row, index in enumerate(table["index"])}
    panels, placed = [], set()
    for row, (index, pair) in enumerate(zip(table["index"], table["strand_pair"])):
        if row in placed:
            continue
        partner = row_of.get(int(pair))
        if partner is None or partner == row:
            panels.append((row,))
            continue
        plus, minus = (row, partner) if str(table["identifier"].iloc[row]).endswith("+") or \
            str(table["identifier"].iloc[partner]).endswith("-") else (partner, row)
        panels.append((plus, minus))
        placed.update((row, partner))
    return panels
