"""The prediction run: the output's rule with the model's identity, the rows written and resumed, shards, and
predictions in memory for notebooks."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Iterable


from ..data.genome import Genome, Interval
from ..errors import UserError
from ..outputs import DIRECTORY, FILE, Output, opened, weights_identity, weights_record
from ..outputs import hdf5
from ..outputs.faults import fault
from ..windows import plan_region, tile_offsets
from .compute import Job, completed_regions, jobs
from .layout import check_complete, create_layout, merge_parts, open_partial, stale_rows, write_region
from .options import PredictOptions, Work, prediction_fingerprint, prediction_inputs, prepare


def predict(
    model,
    out: str | os.PathLike | Output,
    *,
    genome: Genome | str | os.PathLike | None = None,
    regions: Iterable[Interval] | None = None,
    sequences: str | os.PathLike | None = None,
    options: PredictOptions = PredictOptions(),
    bigwig_dir: str | os.PathLike | Output | None = None,
    progress: bool = True,
) -> Path | None:
    """Predict every region (with ``genome``) or every sequence of a FASTA (``sequences``) into HDF5 ``out``.

    All regions are checked (known chromosome, inside it) before anything is written. Results are written
    as they come to ``OUT.partial``; a rerun with the same weights, options and regions resumes it; the file
    is renamed to ``out`` when complete. ``out`` is a path or a :class:`senformer.outputs.Output`: pass
    ``Output(path, overwrite=True)`` to replace a file of other inputs, ``Output(path, shard=Shard(k, n))``
    for one part of a split run (None is returned while other parts are missing). The fingerprint is the
    one ``senformer predict`` gives (:func:`~senformer.predict.options.prediction_fingerprint`), so a file
    written either way is up to date for the other. An up-to-date ``out`` (its rows' bases unchanged) is
    returned as it is. ``bigwig_dir``: also write one bigWig per chosen track. Returns the HDF5 file's path.
    """
    output = out if isinstance(out, Output) else Output(out, FILE, command="predict")
    if (genome is None) == (sequences is None):
        raise UserError("give either a genome with regions or a FASTA of sequences")
    if options.tfhub_input and sequences is None:
        raise UserError("--tfhub-input applies to sequences given directly (--sequence-fasta); regions are "
                        "resized to the model's input length anyway")
    if bigwig_dir is not None and genome is None:
        raise UserError("bigWig output needs genome coordinates: use --fasta with regions, not --sequence-fasta")
    regions = None if regions is None else list(regions)
    work = prepare(model, options, genome=genome, regions=regions, sequences=sequences)
    model = model.to(options.device).eval()
    if not output.is_open:  # a library call: the command's recipe, with the weights named by the model itself
        identity = weights_identity(model)
        inputs = prediction_inputs(regions if genome is not None else None, sequences, options.targets)
        output.describe(prediction_fingerprint(identity, options, inputs), settings=asdict(options),
                        inputs={**inputs, "weights": weights_record(identity)})
    with opened(output):
        if output.sharded is not None:
            return _predict_shard(output, model, work, options, progress)
        path = _write(output, model, work, options, progress)
    if bigwig_dir is not None:
        bigwigs = bigwig_dir if isinstance(bigwig_dir, Output) else \
            Output(bigwig_dir, DIRECTORY, command="predict", fingerprint=output.fingerprint, overwrite=output.overwrite)
        write_bigwig_output(bigwigs, path, work.genome)
    return path


def write_bigwig_output(output: Output, h5_path: Path, genome: Genome) -> Path:
    """The bigWigs of a finished prediction file into the folder ``output`` (unless it is up to date)."""
    from .bigwig import write_bigwigs

    with opened(output):
        if output.up_to_date:
            return output.path
        folder = output.start()
        with output.writing("the bigWig tracks"):
            write_bigwigs(h5_path, folder, genome.sizes)
        return output.finish()


def check_bases(path: Path, genome: Genome | None, names: list[str]) -> None:
    """An up-to-date prediction file must still match the genome's bases, row by row; else one line."""
    if genome is None:
        return  # sequences given directly count by their file's digest in the fingerprint
    changed = stale_rows(path, genome)
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise UserError(f"{path} was computed from other bases than {Path(genome.path).name} gives now (region "
                        f"{names[changed[0]]}{more}): the genome changed; pass --overwrite to compute it again")


def _write(output: Output, model, work: Work, options: PredictOptions, progress: bool,
           unit_starts: list[int] | None = None) -> Path:
    """The rows of ``work`` into ``output``'s partial file (resumed when it holds some), then the finish."""
    if output.up_to_date:
        check_bases(output.path, work.genome, work.names)
        return output.path
    output.start()
    partial = output.partial
    with output.writing("a new prediction file"):
        handle, completed = open_partial(partial, output.fingerprint, output.resume)
    try:
        if completed < 0:
            with output.writing("the layout of the prediction file"):
                create_layout(handle, work, model.config, options, output.fingerprint)
                hdf5.check(handle)
            completed = 0
        elif completed and work.genome is not None:
            hdf5.close(handle)
            changed = stale_rows(partial, work.genome, completed)
            handle = hdf5.open_hdf5(partial, "a")
            if changed:
                output.say(f"{partial}: region {work.names[changed[0]]} was computed from other bases than "
                           f"{Path(work.genome.path).name} gives now: computing from there again")
                completed = changed[0]
                handle.attrs["completed"] = completed
        if unit_starts and completed > 0:
            # A shard resumes at a unit's start, so its batches are those of the one-process run, bit for bit.
            completed = max(start for start in unit_starts if start <= completed)
            handle.attrs["completed"] = completed
        _run_rows(output, model, handle, work, options, progress, completed)
    except BaseException:
        hdf5.close(handle)  # the first fault is the one reported
        raise
    error = hdf5.close(handle)
    if error is not None:
        raise fault(partial, "the last rows of the prediction file", error)
    return output.finish(verify=check_complete)


def _run_rows(output: Output, model, handle, work: Work, options: PredictOptions, progress: bool,
              completed: int) -> None:
    from tqdm.auto import tqdm

    windows = [len(tile_offsets(num_bins, work.geometry.bins)) for _, num_bins in work.spans]
    # The bar counts input windows (a long region tiles into several); each window runs once per strand and
    # shift, which the label says when it is more than one pass.
    passes = len(options.shifts) * (2 if options.reverse_complement else 1)
    label = "predict" if passes == 1 else f"predict ({passes} passes per window)"
    bar = tqdm(total=sum(windows), initial=sum(windows[:completed]), unit="window", disable=not progress, desc=label)
    identifiers = work.identifiers()
    for job, outputs, digest in completed_regions(model, jobs(work, completed), work, options, on_batch=bar.update):
        name = work.names[job.row]
        with output.writing(f"the predictions of region {name}"):
            handle["regions/bases_sha256"][job.row] = digest
            write_region(handle, job, outputs, name, identifiers)
            hdf5.check(handle)  # the row's values are on the device before ``completed`` counts them
            handle.attrs["completed"] = job.row + 1
            hdf5.check(handle)
    bar.close()


def _predict_shard(output: Output, model, work: Work, options: PredictOptions, progress: bool) -> Path | None:
    """One shard's part (its units: regions whose windows fill whole batches), then the merge if it is last."""
    from ..outputs import unit_starts

    sharded = output.sharded
    sizes = [len(tile_offsets(num_bins, work.geometry.bins)) for _, num_bins in work.spans]  # windows per region
    starts = unit_starts(sizes, options.batch_size)
    bounds = starts + [len(work.regions)]
    with output.part(len(starts)) as part:
        if not part.done:
            rows = slice(bounds[part.first], bounds[part.stop])
            _write(part.output, model, work.rows(rows), options, progress,
                   unit_starts=[start - rows.start for start in starts[part.first : part.stop]])

    def merge(parts: list[Path], part_records: list[dict], partial: Path) -> dict:
        firsts = merge_parts(parts, partial, work, model.config, options, sharded.fingerprint)
        if work.genome is not None:  # parts finished long ago must still hold the genome's bases
            changed = stale_rows(partial, work.genome)
            if changed:
                index = max(k for k, first in enumerate(firsts) if first <= changed[0])
                sharded.refuse_stale_part(index, f"region {work.names[changed[0]]}")
        return {}

    return sharded.merge(merge)


def predict_regions(model, genome: Genome | str | os.PathLike, regions: Iterable[Interval | str],
                    options: PredictOptions = PredictOptions(), progress: bool = False) -> list:
    """Predictions of ``regions`` in memory, for notebooks: the windows, averaging, stitching and track choice
    of :func:`predict`, in float32, without a file.

    Args:
        genome: a :class:`Genome` or a FASTA path (or ``hg38``/``mm10``).
        regions: :class:`Interval` or ``chr:start-end`` text.
        options: as for :func:`predict` (``tracks`` takes the ``--tracks`` grammar).
    Returns:
        One :class:`senformer.predictions.RegionPrediction` per region, in order: ``values[head]`` is
        ``(bins, tracks)`` float32 (coverage with ``options.coverage``: ``units`` says which), ``tracks[head]``
        the chosen rows of the head's track table, and ``bins_start`` the genome coordinate of the first bin.

    >>> hbb, = predict_regions(model, "hg38", ["chr11:5,225,000-5,230,000"], PredictOptions(tracks=("CAGE:.*K562",)))
    """
    from tqdm.auto import tqdm

    from ..data.genome import parse_region
    from ..outputs import first_non_finite
    from ..predictions import RegionPrediction

    intervals = [parse_region(r) if isinstance(r, str) else r for r in regions]
    work = prepare(model, options, genome=genome, regions=intervals)
    model = model.to(options.device).eval()
    plans = [plan_region(region, work.geometry) for region in work.regions]
    bar = tqdm(total=sum(len(p.tile_starts) for p in plans), unit="window", disable=not progress, desc="predict")
    results = []
    for job, outputs, _ in completed_regions(model, (Job(row, plan) for row, plan in enumerate(plans)), work,
                                             options, on_batch=bar.update):
        values = {head: outputs[head] for head in work.heads}
        for head, value in values.items():
            if first_non_finite(value) is not None:
                raise UserError(f"region {work.names[job.row]}: head {head} predicts non-finite values")
        tables = {head: work.tables[head].iloc[work.selections[head]].reset_index(drop=True) for head in work.heads}
        region = work.regions[job.row]
        results.append(RegionPrediction(Interval(region.chrom, region.start, region.end, work.names[job.row]),
                                        job.plan.span_start, work.geometry.bin_size, values, tables, options.units))
    bar.close()
    return results
