"""``senformer analyze genes``: gene-level scores of a VCF's variants into one compact file, in one process or
in shards (``--shard K/N``, torchrun ranks) through :class:`senformer.outputs.Output`.

``OUT.h5`` (one row per scored variant x gene; tracks on one axis for genes of either strand: the i-th is one
experiment on the gene's own strand, :func:`senformer.analysis.gene_scores.gene_tracks`)::

    rows/{chrom, pos, id, ref, alt, gene_id, gene_name, gene_strand}   (rows,)
    scores/<stat>                                                       (rows, tracks) float32, stats asked
    tracks/{identifier, description}                                    (tracks,) the + gene's tracks
    tracks/{plus, minus}                                                (tracks,) rows of the track table
    notes/{chrom, pos, id, ref, alt, gene_id, note}                     (notes,) what was not scored, and why
    attribute completed                                                 the rows written

``OUT.tsv`` holds the same rows, one column per asked stat and track (``logSED:RNA1``), and the notes as rows
with a ``note`` and no scores. Rows come in window order (one window per variant, or per gene); the notes of
variants outside every gene's window come last. A shard writes its windows' rows into its part; the merge
concatenates the parts and adds those notes, so 1 and N processes write the same bytes.

**Tracks.** ``tracks`` (``--tracks``) selects rows of the head's track table as ``predict`` and ``analyze
variants`` do; the axis keeps the columns with a selected row on either strand, and only their tracks are
untransformed and summed: each kept score equals that column of a run of every track, bit for bit.

**Resume.** Rows stream into ``OUT.partial`` (a shard's part likewise) under the existing-output rule. A run
stopped on the way (killed, a full disk) leaves its complete rows there; the next run with the same inputs and
options (the same fingerprint) keeps them, rebuilds the notes of the windows they cover without a model
(:func:`resume_point`) and scores from the first window not written whole; an ``.h5``'s rows are replayed into a
new file first (:meth:`senformer.outputs.Output.set_aside`, :meth:`GeneWriter.replay`). Either format then has
the bytes of an uninterrupted run. A finished ``OUT`` of other inputs is refused, naming what differs
(:func:`refuse_other_inputs`), unless ``--overwrite``; a partial of other inputs is started again.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..data.genome import Genome
from ..data.gtf import Gene
from ..data.vcf import Variant
from ..errors import UserError
from ..fingerprint import value_digest
from ..outputs import Output, close_quietly, hdf5
from ..windows import Geometry
from .gene_scores import (
    SED_STATS, GeneNote, GeneScore, GeneWindow, gene_tracks, plan_window, plan_windows, score_window, track_strands,
)

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
    tracks: tuple[str, ...] | None = None  # the --tracks grammar on the head's table; None: every track

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


def track_axis(table: pd.DataFrame, tracks: Sequence[str] | None = None, head: str | None = None
               ) -> dict[str, np.ndarray]:
    """``plus``/``minus`` rows of the track table on the one track axis, and its names (the + gene's tracks,
    a stranded identifier without its trailing ``+``); ``columns``: the positions kept of the whole axis.

    ``tracks`` selects rows of ``table`` by the ``--tracks`` grammar (:func:`senformer.data.tracks.select_tracks`,
    as ``predict`` and ``analyze variants``: indices, identifiers, descriptions, patterns); a column is kept
    when either of its two rows is selected (``RNA1-`` keeps ``RNA1``: a gene reads its own strand)."""
    from ..data.tracks import select_tracks

    plus, minus = gene_tracks(table, "+"), gene_tracks(table, "-")
    selected = select_tracks(list(tracks) if tracks else None, table, head)
    columns = np.flatnonzero(np.isin(plus, selected) | np.isin(minus, selected))
    plus, minus = plus[columns], minus[columns]
    strands = track_strands(table)
    identifiers = [str(table["identifier"].iloc[row])[: -1 if strands[row] == "+" else None] for row in plus]
    descriptions = [str(value) for value in table["description"].iloc[plus]] if "description" in table else \
        identifiers
    return {"columns": columns, "plus": plus, "minus": minus, "identifier": np.array(identifiers, dtype=object),
            "description": np.array(descriptions, dtype=object)}


# Files ------------------------------------------------------------------------------------------------------
BLOCK_ROWS = 256
"""Rows reach the file in blocks of this many (the last one shorter), and the notes at the end: the file's bytes
then depend only on the sequence of rows and notes, not on how a run was split into shards or resumed."""


class GeneWriter:
    """Rows of a gene-score file streamed in blocks of :data:`BLOCK_ROWS`, the notes (few) written at
    :meth:`close`, as ``h5`` (resizable datasets; ``completed`` counts the rows on the device) or ``tsv``.
    Memory holds one block, not the output.

    ``resume=True`` continues the ``tsv`` an interrupted run left: its complete rows stay, a torn last line and
    any notes are cut off (the run adds the notes again); a file that cannot be read so is started again. An
    ``h5`` is written anew instead, its rows replayed from the interrupted one (:meth:`replay`).
    :attr:`rows` counts the rows either holds."""

    def __init__(self, path: Path, kind: str, axis: dict[str, np.ndarray], stats: Sequence[str],
                 resume: bool = False):
        self.path, self.kind, self.axis, self.stats = path, kind, axis, tuple(stats)
        self.pending = GeneTable.empty(self.stats)
        self.notes: list[dict] = []
        self.written = 0
        self.handle = None
        if resume and kind == "tsv":
            self.written = self._reopen_tsv()
        if self.handle is not None:
            return
        self.written = 0
        if kind == "tsv":
            self.handle = open(path, "w", encoding="utf-8")
            self.handle.write(_tsv_header(axis, self.stats) + "\n")
            return
        import h5py

        strings = h5py.string_dtype("utf-8")
        self.handle = hdf5.open_hdf5(path, "w")
        tracks = len(axis["plus"])
        for group, fields in (("rows", ROW_FIELDS), ("notes", NOTE_FIELDS)):
            for field in fields:
                self.handle.create_dataset(f"{group}/{field}", shape=(0,), maxshape=(None,), chunks=(BLOCK_ROWS,),
                                           dtype=np.int64 if field == "pos" else strings)
        for stat in self.stats:
            self.handle.create_dataset(f"scores/{stat}", shape=(0, tracks), maxshape=(None, tracks),
                                       chunks=(min(BLOCK_ROWS, 64), tracks), dtype=np.float32)
        for name in ("identifier", "description"):
            self.handle.create_dataset(f"tracks/{name}", data=axis[name], dtype=strings)
        for name in ("plus", "minus"):
            self.handle.create_dataset(f"tracks/{name}", data=axis[name].astype(np.int64))
        self.handle.attrs["completed"] = 0

    def _reopen_tsv(self) -> int:
        """The complete rows of the table (cut after the last of them), opened for appending."""
        header = (_tsv_header(self.axis, self.stats) + "\n").encode("utf-8")
        try:
            with open(self.path, "r+b") as handle:
                if handle.readline() != header:
                    return 0
                rows, kept = 0, len(header)
                for line in handle:  # rows come first; a note's line has its ``note`` field filled
                    if not line.endswith(b"\n") or line.split(b"\t", len(ROW_FIELDS) + 1)[len(ROW_FIELDS)]:
                        break
                    rows, kept = rows + 1, kept + len(line)
                handle.truncate(kept)
        except FileNotFoundError:
            return 0
        self.handle = open(self.path, "a", encoding="utf-8")
        return rows

    def replay(self, earlier: Path) -> None:
        """Write the complete rows of ``earlier`` (the ``h5`` file of an interrupted run, set aside) again, block
        by block as that run wrote them, so the file grows as an uninterrupted run's does (HDF5 would place what
        it adds to a reopened file elsewhere); a file that cannot be read so adds nothing."""
        import h5py

        try:
            source = h5py.File(earlier, "r")
        except OSError:  # killed before the file was complete enough to open
            return
        with source:
            try:
                rows = int(source.attrs["completed"])
                datasets = [source[f"rows/{field}"] for field in ROW_FIELDS]
                datasets += [source[f"scores/{stat}"] for stat in self.stats]
                if any(dataset.shape[0] < rows for dataset in datasets):
                    return
            except (KeyError, ValueError):
                return
            for start in range(0, rows, BLOCK_ROWS):
                self.add(_h5_rows(source, start, min(start + BLOCK_ROWS, rows), self.stats))

    def add(self, table: "GeneTable") -> None:
        """Append ``table``'s rows (written block by block) and notes (kept for :meth:`close`)."""
        self.pending.extend(GeneTable(table.rows, table.scores, []))
        self.notes += table.notes
        while len(self.pending.rows) >= BLOCK_ROWS:
            self._write(BLOCK_ROWS)

    def _write(self, count: int) -> None:
        rows = self.pending.rows[:count]
        scores = {stat: self.pending.scores[stat][:count] for stat in self.stats}
        self.pending = GeneTable(self.pending.rows[count:],
                                 {stat: self.pending.scores[stat][count:] for stat in self.stats}, [])
        if self.kind == "tsv":
            self.handle.writelines(line + "\n" for line in _tsv_rows(rows, scores, self.stats))
            self.handle.flush()  # a killed run leaves whole blocks for the next one to resume
        else:
            self._append("rows", ROW_FIELDS, rows)
            for stat in self.stats:
                dataset = self.handle[f"scores/{stat}"]
                dataset.resize(self.written + count, axis=0)
                dataset[self.written :] = np.stack(scores[stat]).astype(np.float32)
            hdf5.check(self.handle)  # the rows are on the device before ``completed`` counts them
            self.handle.attrs["completed"] = self.written + count
            hdf5.check(self.handle)
        self.written += count

    @property
    def rows(self) -> int:
        """Rows added so far, written or pending."""
        return self.written + len(self.pending.rows)

    def _append(self, group: str, fields: Sequence[str], records: list[dict]) -> None:
        for field in fields:
            dataset = self.handle[f"{group}/{field}"]
            start = dataset.shape[0]
            dataset.resize(start + len(records), axis=0)
            values = [record[field] for record in records]
            dataset[start:] = np.array(values, dtype=np.int64 if field == "pos" else object)

    def close(self) -> None:
        """Write the last block and the notes; close the file (a write fault raised here)."""
        if self.pending.rows:
            self._write(len(self.pending.rows))
        if self.kind == "tsv":
            self.handle.writelines(line + "\n" for line in _tsv_notes(self.notes, self.axis, self.stats))
        elif self.notes:
            self._append("notes", NOTE_FIELDS, self.notes)
        handle, self.handle = self.handle, None
        if self.kind == "tsv":
            handle.close()
            return
        error = hdf5.close(handle)
        if error is not None:
            raise error

    def abandon(self) -> None:
        """After an error (or a kill, in tests): close the file as it is, without the rows still pending or the
        notes; the whole blocks written stay for a resumed run."""
        handle, self.handle = self.handle, None
        if handle is None:
            return
        if self.kind == "tsv":
            close_quietly(handle)
        else:
            hdf5.close(handle)


def read_blocks(path: Path, kind: str, stats: Sequence[str]) -> Iterator[GeneTable]:
    """A part's rows block by block, then its notes (as a last table without rows)."""
    if kind == "tsv":  # "%.7g" read back and written again gives the same text
        block, notes = GeneTable.empty(stats), []
        with open(path, encoding="utf-8") as handle:
            handle.readline()
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                if fields[len(ROW_FIELDS)]:
                    notes.append({**{field: _value(field, value) for field, value in zip(NOTE_FIELDS, fields)},
                                  "note": fields[len(ROW_FIELDS)]})
                    continue
                block.rows.append({field: _value(field, value) for field, value in zip(ROW_FIELDS, fields)})
                values = np.array(fields[len(ROW_FIELDS) + 1 :], dtype=np.float64).reshape(len(stats), -1)
                for stat, row in zip(stats, values):
                    block.scores[stat].append(row)
                if len(block.rows) == BLOCK_ROWS:
                    yield block
                    block = GeneTable.empty(stats)
        yield GeneTable(block.rows, block.scores, notes)
        return
    import h5py

    with h5py.File(path, "r") as handle:
        total = handle["rows/pos"].shape[0]
        for start in range(0, total, BLOCK_ROWS):
            yield _h5_rows(handle, start, min(start + BLOCK_ROWS, total), stats)
        columns = {field: handle[f"notes/{field}"][()] for field in NOTE_FIELDS}
        notes = [{field: _value(field, columns[field][index]) for field in NOTE_FIELDS}
                 for index in range(len(columns["pos"]))]
        yield GeneTable([], {stat: [] for stat in stats}, notes)


def _h5_rows(handle, start: int, stop: int, stats: Sequence[str]) -> GeneTable:
    """Rows ``start`` to ``stop`` of an open ``h5`` gene-score file."""
    columns = {field: handle[f"rows/{field}"][start:stop] for field in ROW_FIELDS}
    rows = [{field: _value(field, columns[field][index]) for field in ROW_FIELDS} for index in range(stop - start)]
    return GeneTable(rows, {stat: list(handle[f"scores/{stat}"][start:stop]) for stat in stats}, [])


def _value(field: str, value):
    """A field as written: ``pos`` an int, the rest text (HDF5 gives bytes)."""
    if field == "pos":
        return int(value)
    return value.decode() if isinstance(value, bytes) else value


def _tsv_header(axis: dict[str, np.ndarray], stats: Sequence[str]) -> str:
    return "\t".join([*ROW_FIELDS, "note", *(f"{stat}:{name}" for stat in stats for name in axis["identifier"])])


def _tsv_rows(rows: list[dict], scores: dict[str, list[np.ndarray]], stats: Sequence[str]) -> list[str]:
    """A scored row's line: its ``note`` empty."""
    return ["\t".join([*(str(row[field]) for field in ROW_FIELDS), "",
                       *(f"{value:.7g}" for stat in stats for value in scores[stat][index])])
            for index, row in enumerate(rows)]


def _tsv_notes(notes: list[dict], axis: dict[str, np.ndarray], stats: Sequence[str]) -> list[str]:
    """A note's line: its scores empty."""
    blank = [""] * (len(stats) * len(axis["identifier"]))
    return ["\t".join([*(str(note[field]) for field in NOTE_FIELDS[:6]), "", "", note["note"], *blank])
            for note in notes]


# A run ------------------------------------------------------------------------------------------------------
OPTION_FLAGS = {"head": "--head", "sequence_length": "--length", "centre": "--centre", "reverse_complement": "--rc",
                "indels": "--indels", "plain": "--plain", "batch_size": "--batch-size", "stats": "--stats",
                "tracks": "--tracks"}
"""The command-line option of each :class:`GeneOptions` field, named when a finished output's differ."""


def refuse_other_inputs(output: Output, fingerprint: str, inputs: dict, options: GeneOptions) -> None:
    """Refuse (unless ``--overwrite``) a finished ``OUT`` computed from other inputs in one line that names what
    differs: the VCF, GTF, FASTA and targets by their digests, the weights by their identity, each option by its
    value. ``inputs`` holds this run's digests and its ``weights`` record. An output whose record names no
    difference is left to the existing-output rule."""
    record = output.recorded()
    if output.overwrite or not record or record.get("fingerprint") in (None, fingerprint):
        return
    recorded = record.get("inputs") or {}
    differ = [name.upper() if name in ("vcf", "gtf") else name for name in ("vcf", "gtf", "fasta", "targets")
              if value_digest(recorded.get(name)) != value_digest(inputs.get(name))]
    identity = [{key: (weights or {}).get(key) for key in ("tensors", "config")}
                for weights in (recorded.get("weights"), inputs.get("weights"))]
    if value_digest(identity[0]) != value_digest(identity[1]):
        differ.append("weights")
    settings = (record.get("settings") or {}).get("options") or {}
    differ += [flag for name, flag in OPTION_FLAGS.items()
               if value_digest(settings.get(name)) != value_digest(getattr(options, name))]
    if differ:
        raise UserError(f"{output.path} was written from other inputs ({', '.join(differ)} differ); pass "
                        "--overwrite to replace it")


def resume_point(genome: Genome, windows: Sequence[GeneWindow], geometry: Geometry, rows: int
                 ) -> tuple[int, int, list[GeneNote]]:
    """Where a run over ``windows`` continues when its file holds their first ``rows`` rows: (the first window
    not written whole, how many of its rows are written, the notes of the windows before it). Only the
    windows' plans are needed (:func:`senformer.analysis.gene_scores.plan_window`), no model."""
    done, notes = 0, []
    if rows == 0:
        return 0, 0, notes
    for index, window in enumerate(windows):
        plan = plan_window(genome, window, geometry)
        if done + plan.rows > rows:
            return index, rows - done, notes
        done += plan.rows
        notes += plan.notes
    if done != rows:
        raise RuntimeError(f"a partial output of {rows} rows for windows of {done} rows, under one fingerprint")
    return len(windows), 0, notes


def write_gene_scores(models: Sequence, genome: Genome, variants: Sequence[Variant], genes: Sequence[Gene],
                      table: pd.DataFrame, output: Output, options: GeneOptions, progress: bool = False
                      ) -> Path | None:
    """Score ``variants`` for ``genes`` with ``models`` (replicates, averaged score by score) into ``output``
    (opened and decided by the caller; a sharded one writes this shard's windows into its part and merges when
    every part is done). A partial output (or part) of the same fingerprint is resumed after its last complete
    row. Returns the finished path, or None while other shards' parts are missing."""
    from tqdm.auto import tqdm

    geometry = Geometry.of(models[0].config, options.sequence_length)
    windows, outside = plan_windows(variants, genes, geometry.sequence_length, options.centre)
    axis = track_axis(table, options.tracks, options.head)
    kind = output_format(output.path)
    resolved = {"options": dataclasses.asdict(options), "windows": len(windows), "tracks": len(axis["plus"]),
                "track_names": axis["identifier"].tolist()}
    last = GeneTable.empty(options.stats)  # the notes of variants in no window come last
    last.add([], outside)

    def compute(target: Output, first: int, stop: int, with_last: bool) -> None:
        """Windows ``first`` to ``stop`` into ``target``'s partial output, after the rows it already holds."""
        partial = target.start()
        with target.writing("the gene scores"):
            if target.resume and kind == "h5":
                with target.set_aside() as earlier:
                    writer = GeneWriter(partial, kind, axis, options.stats)
                    try:
                        writer.replay(earlier)
                    except BaseException:
                        writer.abandon()
                        raise
            else:
                writer = GeneWriter(partial, kind, axis, options.stats, resume=target.resume)
            try:
                start, skip, notes = resume_point(genome, windows[first:stop], geometry, writer.rows)
                if start or skip:
                    rows = f"{writer.rows:,} row" + ("s" if writer.rows != 1 else "")
                    target.say(f"{partial}: resuming after {rows}, at window {first + start + 1:,}")
                written = GeneTable.empty(options.stats)
                written.add([], notes)
                writer.add(written)
                for window in tqdm(windows[first + start : stop], desc="gene windows", initial=start,
                                   total=stop - first, disable=not progress):
                    scores, notes = score_window(
                        models, genome, window, table, head=options.head, sequence_length=geometry.sequence_length,
                        reverse_complement=options.reverse_complement, indels=options.indels, plain=options.plain,
                        batch_size=options.batch_size, columns=axis["columns"])
                    scored = GeneTable.empty(options.stats)
                    scored.add(scores[skip:], notes)  # a window cut by the kill: its first rows are written
                    skip = 0
                    writer.add(scored)
                if with_last:
                    writer.add(last)
                writer.close()
            except BaseException:
                writer.abandon()  # closed once, as it is: the first error is the one reported
                raise

    if output.sharded is None:
        compute(output, 0, len(windows), with_last=True)
        return output.finish(**resolved)
    with output.part(len(windows)) as part:
        if not part.done:
            compute(part.output, part.first, part.stop, with_last=False)
            part.output.finish()

    def merge(parts: list[Path], records: list[dict], partial: Path) -> dict:
        writer = GeneWriter(partial, kind, axis, options.stats)
        try:
            for path in parts:
                if path.stat().st_size:
                    for block in read_blocks(path, kind, options.stats):
                        writer.add(block)
            writer.add(last)
            writer.close()
        except BaseException:
            writer.abandon()
            raise
        return resolved

    return output.sharded.merge(merge)
