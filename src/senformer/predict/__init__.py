"""Predict tracks for genomic regions or for sequences given directly, streamed into HDF5 (and bigWig).

One job per module: :mod:`.options` (the options, the fingerprint recipe, the checked work),
:mod:`senformer.windows` (the geometry below), :mod:`.compute` (windows in batches through the inference
module, stitched), :mod:`.layout` (the HDF5 file: layout, rows, resume, merge, completeness), :mod:`.run`
(the run under its :class:`senformer.outputs.Output`; predictions in memory), :mod:`.bigwig`.

Geometry. A model input of ``L`` bp gives ``bins`` output bins of 128 bp: the central ``bins * 128`` bp
(114,688 of 196,608 for the published model). A region is predicted over its *span*: ``max(bins, ceil(width /
128))`` bins centred on the region. A span of one output window is one input window centred on the region
(N beyond chromosome ends); a longer span is tiled with windows overlapping by half an output window and
stitched, each bin taken from the window in which it is most central (bins near a window's edge see less
context).

Averaging. ``reverse_complement=True`` also predicts the reverse complement and flips its output back;
``shifts=(-1, 0, 1)`` moves the input window by those bp (genome sequence, or N for given sequences). The
result is the mean over all passes.

Output (HDF5, written to ``OUT.partial`` and renamed when complete, under the existing-output rule and lock of
:class:`senformer.outputs.Output`; a rerun resumes a partial file of the same inputs):
  ``/<head>/predictions`` float16 ``(regions, bins, tracks)`` (NaN past a shorter region's span; a value
  that is not finite once stored as float16, such as an output above 65,504, stops the run naming the region
  and track: float16 halves the file and a track that large is a broken model, not a result to store),
  ``/<head>/tracks/{index,identifier,description,assay_group}``, ``/regions/{chrom,start,end,name}``,
  ``/regions/bins_start`` (genome coordinate of each region's first bin; bin k covers
  ``[bins_start + 128 k, bins_start + 128 (k + 1))``), ``/regions/num_bins``, ``/regions/bases_sha256`` (per row, the SHA-256 of the exact input bases of its
  windows, N padding included: rows of a resumed file whose genome bases changed are computed again, and a
  complete file whose bases changed is not up to date), optional ``/embeddings``
  float16 ``(regions, bins, 2 dim)``; attributes ``settings`` (JSON), ``config`` (JSON), ``bin_size``.

Many processes (:mod:`senformer.outputs.shards`, an ``Output`` with a ``shard``): the regions split into units
of whole batches (a unit ends where a batch of the one-process run ends with a region), each shard predicts a
contiguous run of units into its part (resuming at a unit's start, so its batches are the one-process run's),
and the merge copies the parts' rows into one file. """

from __future__ import annotations

from .options import PredictOptions
from .run import predict, predict_regions

__all__ = ["PredictOptions", "predict", "predict_regions"]
