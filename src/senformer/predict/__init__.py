"""Predict tracks for genomic regions or for sequences given directly, streamed into HDF5 (and bigWig).

One job per module: :mod:`.options` (the options, the fingerprint recipe, the checked work),
:mod:`senformer.windows` (the geometry below), :mod:`.compute` (windows in batches through the inference
module, stitched), :mod:`.layout` (the HDF5 file: layout, rows, resume, merge, completeness), :mod:`.run`
(the run under its :class:`senformer.outputs.Output`; predictions in memory), :mod:`.bigwig`.

Geometry (:class:`senformer.windows.Geometry`, from the weights' configuration). A model input of ``L`` bp
gives ``bins`` output bins of ``bin_size`` bp: the central ``bins * bin_size`` bp (Enformer: 896 bins of 128
bp, 114,688 of 196,608; Borzoi: 16,352 bins of 32 bp, 523,264 of 524,288 after its crop of 16 bins a side, or
the central 6,144 with ``target_length=6144``). A region is predicted over its *span*: ``max(bins, ceil(width /
bin_size))`` bins centred on the region. A span of one output window is one input window centred on the region
(N beyond chromosome ends); a longer span is tiled with windows overlapping by half an output window and
stitched, each bin taken from the window in which it is most central (bins near a window's edge see less
context).

Averaging. ``reverse_complement=True`` also predicts the reverse complement and flips its output back
(a stranded track, Borzoi's + and - RNA-seq and CAGE, is read from its strand pair's output);
``shifts=(-1, 0, 1)`` moves the input window by those bp (genome sequence, or N for given sequences). The
result is the mean over all passes (and over the models of an ensemble). ``coverage=True`` then undoes Borzoi's
squashed scale (:func:`senformer.data.borzoi_targets.undo_squashed_scale`).

Output (HDF5, written to ``OUT.partial`` and renamed when complete, under the existing-output rule and lock of
:class:`senformer.outputs.Output`; a rerun resumes a partial file of the same inputs):
  ``/<head>/predictions`` float16 ``(regions, bins, tracks)``, float32 with ``coverage`` (NaN past a shorter region's span; a value
  that is not finite once stored as float16, such as an output above 65,504, stops the run naming the region
  and track: float16 halves the file and a track that large is a broken model, not a result to store),
  ``/<head>/tracks/{index,identifier,description,assay_group}`` (a Borzoi head's also ``strand_pair``, ``scale``,
  ``clip_soft``, ``sum_stat``), ``/regions/{chrom,start,end,name}``,
  ``/regions/bins_start`` (genome coordinate of each region's first bin; bin k covers
  ``[bins_start + bin_size k, bins_start + bin_size (k + 1))``), ``/regions/num_bins``, ``/regions/bases_sha256`` (per row, the SHA-256 of the exact input bases of its
  windows, N padding included: rows of a resumed file whose genome bases changed are computed again, and a
  complete file whose bases changed is not up to date), optional ``/embeddings``
  float16 ``(regions, bins, 2 dim)``; attributes ``settings`` (JSON), ``config`` (JSON), ``bin_size``, ``units`` (``model output``,
  ``coverage x scale`` or ``coverage``).

Many processes (:mod:`senformer.outputs.shards`, an ``Output`` with a ``shard``): the regions split into units
of whole batches (a unit ends where a batch of the one-process run ends with a region), each shard predicts a
contiguous run of units into its part (resuming at a unit's start, so its batches are the one-process run's),
and the merge copies the parts' rows into one file. """

from __future__ import annotations

from .options import PredictOptions
from .run import predict, predict_regions

__all__ = ["PredictOptions", "predict", "predict_regions"]
