"""``senformer analyze genes``: gene-level scores of a VCF's variants into one compact file, in one process or
in shards (``--shard K/N``, torchrun ranks) through :class:`senformer.outputs.Output`.

``OUT.h5`` (one row per scored variant x gene; tracks on one axis for genes of either strand: the i-th is one
experiment on the gene's own strand, :func:`senformer.analysis.gene_scores.gene_tracks`)::

    rows/{chrom, pos, id, ref, alt, gene_id, gene_name, gene_strand}   (rows,)
    scores/<stat>                                                       (rows, tracks) float32, stats asked
    tracks/{identifier, description}                                    (tracks,) the + gene's tracks
    tracks/{plus, minus}                                                (tracks,) rows of the track table
    notes/{chrom, pos, id, ref, alt, gene_id, note}                     (notes,) what was not scored, and why

``OUT.tsv`` holds the same rows, one column per asked stat and track (``logSED:RNA1``), and the notes as rows
with a ``note`` and no scores. Rows come in window order (one window per variant, or per gene); the notes of
variants outside every gene's window come last. A shard writes its windows' rows into its part; the merge
concatenates the parts and adds those notes, so 1 and N processes write the same bytes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.genome import Genome
from ..data.gtf import Gene
from ..data.vcf import Variant
from ..errors import UserError
from ..outputs import Output, hdf5
from .gene_scores import SED_STATS, GeneNote, GeneScore, gene_tracks, plan_windows, score_window, track_strands

ROW_FIELDS = ("chrom", "pos", "id", "ref", "alt", "gene_id", "gene_name", "gene_strand")
NOTE_FIELDS = ("chrom", "pos", "id", "ref", "alt", "gene_id", "note")
FORMATS = (".h5", ".tsv")


@dataclass(frozen=True)
class GeneOptions:
    """The settings of a gene-score run (``senformer analyze genes``'s options)."""

    head: str = "human"
    sequence_length: int | None = None
    centre: str = "variant"  # or "gene"
    reverse_complement: bool = False
    indels: str = "refill"  # or "calico"
    plain: bool = False
    batch_size: int = 4
    stats: tuple[str, ...] = SED_STATS

    def __post_init__(self) -> None:
        unknown = [stat for stat in self.stats if stat not in SED_STATS]
        if unknown or not self.stats:
            raise UserError(f"--stats {','.join(self.stats)}: choose from {', '.join(SED_STATS)}")
        if self.indels == "calico" and self.centre != "variant":
            raise UserError("--indels calico cuts each allele around its own variant: only with --centre variant")


def output_format(out: str | os.PathLike) -> str:
    """``h5`` or ``tsv`` from the name of ``out``; else one UserError line."""
    for suffix in FORMATS:
        if str(out).lower().endswith(suffix):
            return suffix[1:]
    raise UserError(f"--out {out}: the name must end in .h5 or .tsv (the output format)")


@dataclass
class GeneTable:
    """Scored rows and notes, in order (what a file or a part holds)."""

    rows: list[dict]
    scores: dict[str, list[np.ndarray]]  # {stat: [(tracks,) per row]}
    notes: list[dict]

    @classmethod
    def empty(cls, stats: Sequence[str]) -> "GeneTable":
        return cls([], {stat: [] for stat in stats}, [])

    def add(self, scores: Sequence[GeneScore], notes: Sequence[GeneNote]) -> None:
        for score in scores:
            variant, gene = score.variant, score.gene
            self.rows.append({**_variant_fields(variant), "gene_id": gene.gene_id, "gene_name": gene.name,
                              "gene_strand": gene.strand})
            for stat in self.scores:
                self.scores[stat].append(score.scores[stat].astype(np.float32))
        self.notes.extend({**_variant_fields(note.variant), "gene_id": note.gene.gene_id if note.gene else "",
                           "note": note.note} for note in notes)

    def extend(self, other: "GeneTable") -> None:
        self.rows += other.rows
        self.notes += other.notes
        for stat in self.scores:
            self.scores[stat] += other.scores[stat]


def _variant_fields(variant: Variant) -> dict:
    return {"chrom": variant.chrom, "pos": variant.pos, "id": variant.id, "ref": variant.ref, "alt": variant.alt}


def track_axis(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """``plus``/``minus`` rows of the track table on the one track axis, and its names (the + gene's tracks,
    a stranded identifier without its trailing ``+``)."""
    plus, minus = gene_tracks(table, "+"), gene_tracks(table, "-")
    strands = track_strands(table)
    identifiers = [str(table["identifier"].iloc[row])[: -1 if strands[row] == "+" else None] for row in plus]
    descriptions = [str(value) for value in table["description"].iloc[plus]] if "description" in table else \
        identifiers
    return {"plus": plus, "minus": minus, "identifier": np.array(identifiers, dtype=object),
            "description": np.array(descriptions, dtype=object)}


# Files ------------------------------------------------------------------------------------------------------
def write_table(path: Path, kind: str, result: GeneTable, axis: dict[str, np.ndarray], stats: Sequence[str]) -> None:
    """``result`` into ``path`` as ``kind`` (``h5`` or ``tsv``)."""
    if kind == "tsv":
        header, rows, notes = _tsv_lines(result, axis, stats)
        path.write_text("\n".join([header, *rows, *notes]) + "\n", encoding="utf-8")
        return
    import h5py

    strings = h5py.string_dtype("utf-8")
    handle = hdf5.open_hdf5(path, "w")
    try:
        for group, fields, records in (("rows", ROW_FIELDS, result.rows), ("notes", NOTE_FIELDS, result.notes)):
            for field in fields:
                values = [record[field] for record in records]
                if field == "pos":
                    handle.create_dataset(f"{group}/{field}", data=np.array(values, dtype=np.int64))
                else:
                    handle.create_dataset(f"{group}/{field}", data=np.array(values, dtype=object), dtype=strings)
        for stat in stats:
            values = np.stack(result.scores[stat]) if result.rows else np.zeros((0, len(axis["plus"])))
            handle.create_dataset(f"scores/{stat}", data=values.astype(np.float32))
        for name in ("identifier", "description"):
            handle.create_dataset(f"tracks/{name}", data=axis[name], dtype=strings)
        for name in ("plus", "minus"):
            handle.create_dataset(f"tracks/{name}", data=axis[name].astype(np.int64))
    finally:
        error = hdf5.close(handle)
    if error is not None:
        raise error


def read_table(path: Path, kind: str, stats: Sequence[str]) -> GeneTable | tuple[list[str], list[str]]:
    """A part's contents: a :class:`GeneTable` (``h5``), or its (row lines, note lines) (``tsv``)."""
    if kind == "tsv":
        _, *lines = path.read_text(encoding="utf-8").splitlines()
        is_note = [bool(line.split("\t")[len(ROW_FIELDS)]) for line in lines]
        return ([line for line, note in zip(lines, is_note) if not note],
                [line for line, note in zip(lines, is_note) if note])
    import h5py

    result = GeneTable.empty(stats)
    with h5py.File(path, "r") as handle:
        for group, fields, records in (("rows", ROW_FIELDS, result.rows), ("notes", NOTE_FIELDS, result.notes)):
            columns = {field: handle[f"{group}/{field}"][()] for field in fields}
            for index in range(len(columns[fields[0]])):
                records.append({field: int(columns[field][index]) if field == "pos" else
                                columns[field][index].decode() for field in fields})
        for stat in stats:
            result.scores[stat] = list(handle[f"scores/{stat}"][()])
    return result


def _tsv_lines(result: GeneTable, axis: dict[str, np.ndarray], stats: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """(header, row lines, note lines): a row's ``note`` is empty, a note's scores are."""
    columns = [*ROW_FIELDS, "note", *(f"{stat}:{name}" for stat in stats for name in axis["identifier"])]
    rows = ["\t".join([*(str(row[field]) for field in ROW_FIELDS), "",
                       *(f"{value:.7g}" for stat in stats for value in result.scores[stat][index])])
            for index, row in enumerate(result.rows)]
    blank = [""] * (len(columns) - len(ROW_FIELDS) - 1)
    notes = ["\t".join([*(str(note[field]) for field in NOTE_FIELDS[:6]), "", "", note["note"], *blank])
             for note in result.notes]
    return "\t".join(columns), rows, notes


# A run ------------------------------------------------------------------------------------------------------
def write_gene_scores(models: Sequence, genome: Genome, variants: Sequence[Variant], genes: Sequence[Gene],
                      table: pd.DataFrame, output: Output, options: GeneOptions, progress: bool = False
                      ) -> Path | None:
    """Score ``variants`` for ``genes`` with ``models`` (replicates, averaged score by score) into ``output``
    (opened and decided by the caller; a sharded one writes this shard's windows into its part and merges when
    every part is done). Returns the finished path, or None while other shards' parts are missing."""
    from tqdm.auto import tqdm

    from ..windows import Geometry

    length = Geometry.of(models[0].config, options.sequence_length).sequence_length
    windows, outside = plan_windows(variants, genes, length, options.centre)
    axis = track_axis(table)
    kind = output_format(output.path)
    resolved = {"options": dataclasses.asdict(options), "windows": len(windows), "tracks": len(axis["plus"])}
    last = GeneTable.empty(options.stats)  # the notes of variants in no window come last
    last.add([], outside)

    def compute(path: Path, first: int, stop: int, with_last: bool) -> None:
        result = GeneTable.empty(options.stats)
        for window in tqdm(windows[first:stop], desc="gene windows", disable=not progress):
            result.add(*score_window(models, genome, window, table, head=options.head, sequence_length=length,
                                     reverse_complement=options.reverse_complement, indels=options.indels,
                                     plain=options.plain, batch_size=options.batch_size))
        if with_last:
            result.extend(last)
        write_table(path, kind, result, axis, options.stats)

    if output.sharded is None:
        partial = output.start()
        with output.writing("the gene scores"):
            compute(partial, 0, len(windows), with_last=True)
        return output.finish(**resolved)
    with output.part(len(windows)) as part:
        if not part.done:
            part.output.start()
            with part.output.writing("the gene scores"):
                compute(part.output.partial, part.first, part.stop, with_last=False)
            part.output.finish()

    def merge(parts: list[Path], records: list[dict], partial: Path) -> dict:
        contents = [read_table(path, kind, options.stats) for path in parts if path.stat().st_size]
        if kind == "tsv":
            header, _, last_notes = _tsv_lines(last, axis, options.stats)
            rows = [line for part_rows, _ in contents for line in part_rows]
            notes = [line for _, part_notes in contents for line in part_notes]
            partial.write_text("\n".join([header, *rows, *notes, *last_notes]) + "\n", encoding="utf-8")
        else:
            merged = GeneTable.empty(options.stats)
            for content in contents:
                merged.extend(content)
            merged.extend(last)
            write_table(partial, kind, merged, axis, options.stats)
        return resolved

    return output.sharded.merge(merge)
