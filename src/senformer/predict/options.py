"""What a prediction run is: its options, the one fingerprint recipe, and the checked work (heads, tracks,
regions or sequences) it computes over."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..constants import TFHUB_SEQUENCE_LENGTH
from ..data.genome import Genome, Interval
from ..data.tracks import head_track_table, select_tracks_per_head
from ..errors import UserError
from ..fingerprint import value_digest
from ..predictions import units_of
from ..windows import Geometry, check_shifts, region_span


@dataclass(frozen=True)
class PredictOptions:
    """Everything that shapes a prediction run (stored as JSON in the output)."""

    sequence_length: int | None = None  # None: 196,608 if valid for the model, else its shortest input
    heads: tuple[str, ...] | None = None  # None: every head of the model
    tracks: str | tuple[str, ...] | None = None  # the --tracks grammar (senformer.data.tracks.select_tracks)
    targets: str | None = None  # targets.txt giving track descriptions (mouse ChIP split, custom heads)
    reverse_complement: bool = False
    shifts: tuple[int, ...] = (0,)
    batch_size: int = 1
    device: str = "cpu"
    bf16: bool = False
    embeddings: bool = False
    tfhub_input: bool = False  # given sequences are 393,216 bp; use the centre, as TF-Hub's model does
    coverage: bool = False  # undo Borzoi's squashed scale: each track in its experiment's units (x scale)
    unscale: bool = False  # with coverage: divide out each track's scale too (calico's unscale=True)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        units_of(self.coverage, self.unscale)
        object.__setattr__(self, "shifts", check_shifts(self.shifts))
        if self.heads is not None:
            object.__setattr__(self, "heads", tuple(self.heads))
        if self.tracks is not None and not isinstance(self.tracks, str):
            object.__setattr__(self, "tracks", tuple(str(value) for value in self.tracks))

    @property
    def units(self) -> str:
        """What the stored values are (the file's ``units`` attribute; plot's y-axis label)."""
        return units_of(self.coverage, self.unscale)

    @property
    def margin(self) -> int:
        """bp fetched beyond each window so that every shift reads genome bases."""
        return max(abs(shift) for shift in self.shifts)


# The one recipe --------------------------------------------------------------------------------------------
def region_names(regions: Iterable[Interval]) -> list[str]:
    return [region.name or str(region) for region in regions]


def prediction_inputs(regions: list[Interval] | None, sequences: str | os.PathLike | None,
                      targets: str | os.PathLike | None) -> dict[str, Any]:
    """The digests of a prediction's input files and regions (the genome counts row by row instead)."""
    from ..fingerprint import file_digest
    from ..inputs import input_digest

    return {"regions": None if regions is None else value_digest([[str(r), n] for r, n in
                                                                 zip(regions, region_names(regions))]),
            "sequences": None if sequences is None else file_digest(sequences),
            "targets": input_digest(targets)}


def prediction_fingerprint(weights: Mapping[str, Any], options: PredictOptions, inputs: Mapping[str, Any]) -> str:
    """The fingerprint of a prediction file, the same from ``senformer predict`` and from :func:`predict`.

    ``weights``: :func:`senformer.outputs.weights_identity` of the model (its tensors' bytes and resolved
    configuration); ``inputs``: :func:`prediction_inputs`. Every option counts except the device and the
    path of ``targets`` (its bytes count instead). The genome is not in it: each row records the digest of
    its own input bases (``/regions/bases_sha256``), checked on resume and rerun.
    """
    # --coverage counts only when asked, so files written before it existed stay up to date.
    left_out = ("device", "targets") + (() if options.coverage else ("coverage", "unscale"))
    counted = {key: value for key, value in asdict(options).items() if key not in left_out}
    return value_digest({"command": "predict", "weights": dict(weights), "options": counted, "inputs": dict(inputs)})


# The work ------------------------------------------------------------------------------------------------
@dataclass
class Work:
    """What a prediction run computes over: geometry, heads and their tracks, and the regions' spans.

    ``spans``: ``(first bp, bins)`` per region; ``sequences``: ``(name, bases)`` per row when sequences are
    given directly (then ``genome`` is None).
    """

    geometry: Geometry
    heads: list[str]
    tables: dict
    selections: dict[str, np.ndarray]
    genome: Genome | None
    regions: list[Interval]
    names: list[str]
    spans: list[tuple[int, int]]
    sequences: list[tuple[str, str]] | None
    strand_pairs: dict[str, np.ndarray] = field(default_factory=dict)  # the reverse strand's track of each track
    coverage: dict[str, Any] = field(default_factory=dict)  # --coverage: the chosen rows of each head's table

    def rows(self, rows: slice) -> "Work":
        """The same work for ``rows`` only (a shard's part)."""
        return Work(self.geometry, self.heads, self.tables, self.selections, self.genome, self.regions[rows],
                    self.names[rows], self.spans[rows], None if self.sequences is None else self.sequences[rows],
                    self.strand_pairs, self.coverage)

    def identifiers(self) -> dict[str, list[str]]:
        return {head: list(self.tables[head].iloc[self.selections[head]]["identifier"]) for head in self.heads}


def prepare(model, options: PredictOptions, *, genome=None, regions=None, sequences=None) -> Work:
    """Check the heads, tracks, regions (known chromosome, inside it) or sequences before anything runs."""
    from ..inference import head_strand_pairs

    geometry = Geometry.of(model.config, options.sequence_length)
    heads = list(options.heads) if options.heads else list(model.config.output_heads)
    unknown = [h for h in heads if h not in model.config.output_heads]
    if unknown:
        raise UserError(f"unknown head(s) {', '.join(unknown)}; the model has {', '.join(model.config.output_heads)}")
    tables = {head: head_track_table(head, model.config.output_heads[head], options.targets) for head in heads}
    if options.targets is not None and all(table.attrs["source"] != "targets" for table in tables.values()):
        counts = ", ".join(f"{h} {model.config.output_heads[h]:,}" for h in heads)
        raise UserError(f"{options.targets} has as many rows as none of the heads' tracks ({counts})")
    selections = select_tracks_per_head(options.tracks, tables)
    heads = [h for h in heads if h in selections]  # a pattern keeps the heads where it matches
    pairs = head_strand_pairs(model, tables, options.targets)
    coverage = {}
    if options.coverage:
        from ..data.borzoi_targets import check_scale_columns

        for head in heads:
            where = f"head {head}'s track table ({options.targets or 'shipped'})"
            coverage[head] = check_scale_columns(tables[head].iloc[selections[head]].reset_index(drop=True), where)

    if genome is not None:
        genome = genome if isinstance(genome, Genome) else Genome(genome)
        region_list = list(regions or [])
        if not region_list:
            raise UserError("no regions to predict (empty BED file or no --region)")
        for region in region_list:
            genome.check(region)
        return Work(geometry, heads, tables, selections, genome, region_list, region_names(region_list),
                    [region_span(region, geometry) for region in region_list], None, pairs, coverage)
    records = read_sequences(sequences, geometry, options.tfhub_input)
    region_list = [Interval(name, 0, geometry.sequence_length) for name, _ in records]
    spans = [(geometry.offset_bins * geometry.bin_size, geometry.bins)] * len(records)
    return Work(geometry, heads, tables, selections, None, region_list, [name for name, _ in records], spans, records,
                pairs, coverage)


def read_sequences(path: str | os.PathLike, geometry: Geometry, tfhub_input: bool) -> list[tuple[str, str]]:
    """(name, sequence) of each FASTA record, checked (and centre-cropped with ``tfhub_input``)."""
    genome = Genome(path)
    expected = TFHUB_SEQUENCE_LENGTH if tfhub_input else geometry.sequence_length
    records = []
    for name, size in genome.sizes.items():
        if size != expected:
            hint = " (TF-Hub inputs: pass --tfhub-input)" if size == TFHUB_SEQUENCE_LENGTH and not tfhub_input else ""
            raise UserError(f"{Path(path).name}: sequence {name!r} has {size:,} bp; expected {expected:,}{hint}")
        sequence = genome.fetch(Interval(name, 0, size))
        if tfhub_input:
            trim = (size - geometry.sequence_length) // 2
            sequence = sequence[trim : trim + geometry.sequence_length]
        records.append((name, sequence))
    genome.close()
    if not records:
        raise UserError(f"{path} holds no sequences")
    return records
