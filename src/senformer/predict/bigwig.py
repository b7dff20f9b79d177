"""bigWig tracks from a finished prediction file: one file per head and chosen track, at genome coordinates."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..predictions import hdf5_strings


def write_bigwigs(h5_path: str | os.PathLike, out_dir: str | os.PathLike, chrom_sizes: dict[str, int]) -> list[Path]:
    """One bigWig per head and chosen track of a finished prediction file, at genome coordinates in the file's
    bins (its ``bin_size``: 128 bp for Enformer, 32 for Borzoi) and in its units; where regions overlap their
    predictions are averaged (a bin not on the ``bin_size`` grid is split over the two grid bins it covers,
    weighted by overlap).

    ``out_dir`` is the partial folder of an :class:`senformer.outputs.Output` (renamed whole when every
    bigWig is written), so the files are written in place."""
    import h5py

    try:
        import pybigtools
    except ImportError:
        raise UserError("bigWig output needs pybigtools: pip install 'senformer[bigwig]'") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with h5py.File(h5_path, "r") as handle:
        bin_size = int(handle.attrs["bin_size"])
        chroms = hdf5_strings(handle["regions/chrom"][:])
        bins_start = handle["regions/bins_start"][:]
        num_bins = handle["regions/num_bins"][:]
        heads = [name for name in handle if name not in ("regions", "embeddings")]
        for head in heads:
            predictions = handle[head]["predictions"]
            identifiers = hdf5_strings(handle[head]["tracks/identifier"][:])
            indices = handle[head]["tracks/index"][:]
            for column, (track, identifier) in enumerate(zip(indices, identifiers)):
                sums: dict[str, np.ndarray] = {}
                weights: dict[str, np.ndarray] = {}
                for row in range(len(chroms)):
                    chrom = chroms[row]
                    grid = math.ceil(chrom_sizes[chrom] / bin_size)
                    sums.setdefault(chrom, np.zeros(grid + 1))
                    weights.setdefault(chrom, np.zeros(grid + 1))
                    values = predictions[row, : num_bins[row], column].astype(np.float64)
                    starts = bins_start[row] + bin_size * np.arange(num_bins[row])
                    first, remainder = np.divmod(starts, bin_size)
                    for grid_bin, weight in ((first, (bin_size - remainder) / bin_size), (first + 1, remainder / bin_size)):
                        keep = (grid_bin >= 0) & (grid_bin < grid) & (weight > 0)
                        np.add.at(sums[chrom], grid_bin[keep], weight[keep] * values[keep])
                        np.add.at(weights[chrom], grid_bin[keep], weight[keep])
                safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", identifier)
                path = out_dir / f"{head}_{track}_{safe}.bw"

                def entries(sums=sums, weights=weights):
                    for chrom in sorted(sums):
                        covered = np.flatnonzero(weights[chrom][:-1] > 0)
                        for grid_bin in covered:
                            start = int(grid_bin) * bin_size
                            end = min(start + bin_size, chrom_sizes[chrom])
                            yield chrom, start, end, float(sums[chrom][grid_bin] / weights[chrom][grid_bin])

                pybigtools.open(str(path), "w").write(dict(chrom_sizes), entries())
                written.append(path)
    return written
