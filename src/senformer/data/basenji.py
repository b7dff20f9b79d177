"""Basenji2 dataset directories: a streaming PyTorch dataset per split, and a writer for the same layout.

Layout (spec section 4; ``basenji_data.py``)::

    DIR/statistics.json   num_targets, seq_length, pool_width, crop_bp, target_length, {train,valid,test}_seqs
    DIR/targets.txt       one row per track (tab separated), in the order of the target columns
    DIR/sequences.bed     chrom, start, end, split: train rows, then valid, then test, in record order
    DIR/tfrecords/{split}-{n}.tfr   ZLIB TFRecords of tf.train.Example, n = 0, 1, ... (numeric order)

Each Example holds ``sequence`` (raw bytes of a bool one-hot ``[seq_length, 4]``, ACGT, N = all False) and
``target`` (raw bytes of float16 ``[target_length, num_targets]``). The targets cover the central
``seq_length - 2 crop_bp`` bp (896 bins of 128 bp = 114,688 bp in the real data).

Longer inputs: the published model reads 196,608 bp, 32,768 bp more per side than the records hold. With a
genome FASTA each ``sequences.bed`` interval is resized around its centre, fetched (N beyond chromosome
ends), and its central part checked against the record; without one the flanks are zeros (``flanks =
"zeros"``, the S-Enformer report's choice, which costs accuracy), and every output should say so.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import UserError
from .batch import stack_examples
from ..io import atomic_write_text, write_json
from .example import make_example, parse_example
from .tfrecord import TFRecordError, TFRecordReader, TFRecordWriter, count_records
from .tracks import TARGETS_COLUMNS

SPLITS = ("train", "valid", "test")
STATISTICS_KEYS = ("num_targets", "seq_length", "pool_width", "crop_bp", "target_length")
_SHARD_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<number>\d+)\.tfr$")


# Directory parts --------------------------------------------------------------------------------------

def read_statistics(directory: str | os.PathLike) -> dict[str, Any]:
    """``statistics.json`` of a Basenji2 directory, checked for the keys and their consistency."""
    path = Path(directory) / "statistics.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a Basenji2 data directory (no statistics.json): {Path(directory)}")
    try:
        statistics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: invalid JSON ({error})") from None
    missing = [key for key in STATISTICS_KEYS if key not in statistics]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)}")
    expected_bins = (statistics["seq_length"] - 2 * statistics["crop_bp"]) // statistics["pool_width"]
    if statistics["target_length"] != expected_bins:
        raise UserError(
            f"{path}: target_length {statistics['target_length']} != (seq_length {statistics['seq_length']} - "
            f"2 * crop_bp {statistics['crop_bp']}) / pool_width {statistics['pool_width']} = {expected_bins}"
        )
    return statistics


def split_files(directory: str | os.PathLike, split: str) -> list[Path]:
    """``tfrecords/{split}-N.tfr`` in numeric order of N (``train-10`` after ``train-9``)."""
    folder = Path(directory) / "tfrecords"
    if not folder.is_dir():
        raise FileNotFoundError(f"no tfrecords/ folder in {Path(directory)}")
    numbered = []
    for path in folder.iterdir():
        match = _SHARD_PATTERN.match(path.name)
        if match and match["split"] == split:
            numbered.append((int(match["number"]), path))
    if not numbered:
        raise UserError(f"{folder}: no {split}-N.tfr files (splits present: {', '.join(_present_splits(folder)) or 'none'})")
    numbered.sort()
    return [path for _, path in numbered]


def _present_splits(folder: Path) -> list[str]:
    return sorted({m["split"] for p in folder.iterdir() if (m := _SHARD_PATTERN.match(p.name))})


def read_sequences_bed(directory: str | os.PathLike, split: str | None = None) -> pd.DataFrame:
    """``sequences.bed`` as a table (chrom, start, end, split), optionally only one split's rows in order."""
    path = Path(directory) / "sequences.bed"
    if not path.is_file():
        raise FileNotFoundError(f"sequences.bed not found in {Path(directory)}")
    table = pd.read_csv(path, sep="\t", header=None, comment="#", dtype={0: str, 3: str}, keep_default_na=False)
    if table.shape[1] < 4:
        raise UserError(f"{path}: expected 4 columns (chrom, start, end, split), found {table.shape[1]}")
    table = table.iloc[:, :4]
    table.columns = ["chrom", "start", "end", "split"]
    if split is not None:
        table = table[table["split"] == split].reset_index(drop=True)
    return table


def encode_example(sequence: np.ndarray, target: np.ndarray) -> bytes:
    """Serialize one Basenji2 record.

    Args:
        sequence: one-hot ``(length, 4)`` (bool, or numbers 0/1; N = all zeros).
        target: ``(bins, tracks)``; stored as float16 like Basenji2.
    """
    sequence = np.asarray(sequence)
    target = np.asarray(target)
    if sequence.ndim != 2 or sequence.shape[1] != 4:
        raise ValueError(f"sequence must be a one-hot (length, 4); got {sequence.shape}")
    if target.ndim != 2:
        raise ValueError(f"target must have shape (bins, tracks); got {target.shape}")
    return make_example({
        "sequence": np.ascontiguousarray(sequence.astype(bool)).tobytes(),
        "target": np.ascontiguousarray(target.astype(np.float16)).tobytes(),
    })


def decode_example(payload: bytes, seq_length: int, target_length: int, num_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one record into ``sequence`` uint8 ``(seq_length, 4)`` and ``target`` float16 ``(bins, tracks)``.

    Raises ``ValueError`` when a feature is missing or has the wrong number of bytes (callers add the
    file and the record number).
    """
    features = parse_example(payload)
    for name in ("sequence", "target"):
        if name not in features or not isinstance(features[name], list) or len(features[name]) != 1:
            raise ValueError(f"feature {name!r} missing or not a single bytes value (features: {', '.join(features)})")
    sequence_bytes, target_bytes = features["sequence"][0], features["target"][0]
    if len(sequence_bytes) != seq_length * 4:
        raise ValueError(
            f"sequence has {len(sequence_bytes):,} bytes; seq_length {seq_length:,} needs {seq_length * 4:,} "
            "(a bool one-hot of 4 channels)"
        )
    if len(target_bytes) != target_length * num_targets * 2:
        raise ValueError(
            f"target has {len(target_bytes):,} bytes; {target_length} bins x {num_targets} tracks of float16 need "
            f"{target_length * num_targets * 2:,}"
        )
    sequence = np.frombuffer(sequence_bytes, dtype=np.uint8).reshape(seq_length, 4)
    target = np.frombuffer(target_bytes, dtype=np.float16).reshape(target_length, num_targets)
    return sequence, target


def check_split(directory: str | os.PathLike, split: str, check_crc: bool = True) -> int:
    """Read every record of a split: framing, CRCs, feature sizes, and the total against statistics.json.
    Returns the number of records; raises :class:`TFRecordError` naming the file and record otherwise."""
    statistics = read_statistics(directory)
    expected = statistics.get(f"{split}_seqs")
    total = 0
    for path in split_files(directory, split):
        with TFRecordReader(path, "auto", check_crc) as reader:
            for payload in reader:
                try:
                    decode_example(payload, statistics["seq_length"], statistics["target_length"], statistics["num_targets"])
                except (ValueError, UserError) as error:
                    raise TFRecordError(f"{path}: record {reader.record_number - 1}: {error}") from None
                total += 1
    if expected is not None and total != int(expected):
        raise TFRecordError(f"{Path(directory) / 'tfrecords'}: the {split} files hold {total} records, statistics.json says {split}_seqs = {expected}")
    return total


# The dataset -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shard:
    """Which global example indices one (rank, worker) yields: i < limit, i % world == rank, (i // world) % workers == worker."""

    limit: int
    world_size: int
    rank: int
    num_workers: int
    worker: int

    def owns(self, index: int) -> bool:
        return (
            index < self.limit
            and index % self.world_size == self.rank
            and (index // self.world_size) % self.num_workers == self.worker
        )


class BasenjiDataset(IterableDataset):
    """One split of a Basenji2 directory as a stream of examples.

    Yields dicts: ``sequence`` float32 ``(sequence_length, 4)``, ``target`` float32 ``(bins, tracks)``,
    ``index`` (int, row of the split in ``sequences.bed`` = record number across the split's files) and
    ``interval`` (``chrom:start-end`` of the input actually returned, or ``""`` without ``sequences.bed``).

    Args:
        directory: the Basenji2 directory.
        split: ``train``, ``valid`` or ``test`` (any name with ``{split}-N.tfr`` files works).
        genome: a :class:`senformer.data.genome.Genome` or FASTA path, to rebuild inputs longer than the
            records from the genome (central part checked against the record).
        sequence_length: input length in bp (default: the records' ``seq_length``). Longer: flanks from
            ``genome``, or zeros without one (``flanks == "zeros"``). Shorter: the centre of the record.
        shuffle_buffer: examples held for a seeded shuffle (0: record order). Call :meth:`set_epoch` to
            reshuffle per epoch.
        seed: shuffle seed (the same on every rank).
        rank, world_size: distributed shard. Every rank gets ``floor(n / world_size)`` examples (the last
            ``n mod world_size`` are dropped), so all ranks run the same number of batches.
        max_examples: use only the first ``max_examples`` of the split (before sharding).
        check_crc: verify record CRCs (default on). ``check_sequence``: compare genome and record.
        transform: optional callable applied to each example dict (training augments in :func:`senformer.train.data.augment`).
        shuffle_files: also read the files in a seeded order per epoch (costs one extra pass over the split
            per worker to count each file's records, since ZLIB files cannot be counted without decompressing).

    DataLoader workers split a rank's examples round-robin. Each worker still decompresses every file of
    the split (ZLIB cannot seek) but parses only its own records; see ``docs/data-and-evaluation.md``.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        genome: Any = None,
        sequence_length: int | None = None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_examples: int | None = None,
        *,
        check_crc: bool = True,
        check_sequence: bool = True,
        transform: Callable[[dict], dict] | None = None,
        compression: str = "auto",
        shuffle_files: bool = False,
    ):
        super().__init__()
        self.directory = Path(directory)
        self.split = split
        self.statistics = read_statistics(self.directory)
        self.files = split_files(self.directory, split)
        self.record_length = int(self.statistics["seq_length"])
        self.target_length = int(self.statistics["target_length"])
        self.num_targets = int(self.statistics["num_targets"])
        count_key = f"{split}_seqs"
        if count_key not in self.statistics:
            raise UserError(f"{self.directory / 'statistics.json'}: no {count_key} for split {split!r}")
        self.split_size = int(self.statistics[count_key])
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..world_size-1 (world_size {world_size})")
        if max_examples is not None and max_examples < 0:
            raise ValueError(f"max_examples must be >= 0, got {max_examples}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0
        self.check_crc, self.check_sequence = check_crc, check_sequence
        self.transform = transform
        self.compression = compression
        self.shuffle_files = shuffle_files
        self._starts: list[int] | None = None

        used = self.split_size if max_examples is None else min(max_examples, self.split_size)
        self.per_rank = used // world_size
        self.limit = self.per_rank * world_size

        self.sequence_length = int(sequence_length or self.record_length)
        extra = self.sequence_length - self.record_length
        if extra % 2:
            raise UserError(
                f"sequence_length {self.sequence_length:,} and the records' {self.record_length:,} bp differ by an odd "
                "number of bp; the record must sit in the centre"
            )
        self.flank_bp = extra // 2  # per side; negative: crop
        bed_path = self.directory / "sequences.bed"
        self.intervals: pd.DataFrame | None = None
        if bed_path.is_file():
            self.intervals = read_sequences_bed(self.directory, split)
            if len(self.intervals) != self.split_size:
                raise UserError(
                    f"{bed_path}: {len(self.intervals)} {split} rows, statistics.json says {count_key} = {self.split_size}"
                )
        self.genome = None
        if genome is not None and self.flank_bp > 0:
            if self.intervals is None:
                raise UserError(f"rebuilding inputs from a genome needs {bed_path}")
            self.genome = _open_genome(genome)
        if self.flank_bp <= 0:
            self.flanks = "none" if self.flank_bp == 0 else "cropped"
        else:
            self.flanks = "genome" if self.genome is not None else "zeros"

    # Introspection ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Examples this rank yields per epoch (summed over its DataLoader workers)."""
        return self.per_rank

    @property
    def input_description(self) -> str:
        """How inputs are built, for every output that reports results."""
        if self.flanks == "genome":
            return f"{self.sequence_length:,} bp: records of {self.record_length:,} bp with {self.flank_bp:,} bp genome flanks per side"
        if self.flanks == "zeros":
            return (f"{self.sequence_length:,} bp: records of {self.record_length:,} bp with {self.flank_bp:,} bp ZERO "
                    "flanks per side (no genome given; lower accuracy expected)")
        if self.flanks == "cropped":
            return f"{self.sequence_length:,} bp: centre of the {self.record_length:,} bp records"
        return f"{self.sequence_length:,} bp: the records as stored"

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for a new epoch (call on every rank with the same value)."""
        self.epoch = int(epoch)

    # Iteration -------------------------------------------------------------------------------------
    def _shard(self) -> _Shard:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return _Shard(self.limit, self.world_size, self.rank, workers, worker)

    def _file_order(self) -> list[int]:
        order = list(range(len(self.files)))
        if self.shuffle_files:
            np.random.default_rng([self.seed, self.epoch, 1]).shuffle(order)
        return order

    def _records(self, shard: _Shard) -> Iterator[tuple[int, bytes, Path, int]]:
        """(global index, payload, file, record number in file) of the shard's records, in file order.

        With shuffled file order the global index of a record is still its position in the split, so the
        index -> rank assignment needs each file's starting index; files are counted as they are read, and
        shuffling therefore uses the same order on every rank.
        """
        if self.limit == 0:
            return
        order = self._file_order()
        if order == sorted(order):
            starts = None  # sequential: indices are running counts
        else:
            starts = self._file_starts()
        index = 0
        for position in order:
            path = self.files[position]
            if starts is not None:
                index = starts[position]
                if index >= self.limit:
                    continue
            with TFRecordReader(path, self.compression, self.check_crc) as reader:
                while index < self.limit:
                    if shard.owns(index):
                        number = reader.record_number
                        payload = reader.read_record()
                        if payload is None:
                            break
                        yield index, payload, path, number
                    elif not reader.skip_record():
                        break
                    index += 1
            if starts is None and index >= self.limit:
                return
        if starts is None and index < self.limit:
            raise TFRecordError(
                f"{self.directory / 'tfrecords'}: the {self.split} files hold {index} records, "
                f"statistics.json says {self.split}_seqs = {self.split_size}"
            )

    def _file_starts(self) -> list[int]:
        """Global index of each file's first record (counts the records of all files, once per dataset)."""
        if self._starts is None:
            starts, total = [], 0
            for path in self.files:
                starts.append(total)
                total += count_records(path, self.compression)
            if total != self.split_size:
                raise TFRecordError(
                    f"{self.directory / 'tfrecords'}: the {self.split} files hold {total} records, "
                    f"statistics.json says {self.split}_seqs = {self.split_size}"
                )
            self._starts = starts
        return self._starts

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard = self._shard()
        genome = self.genome
        if genome is not None and get_worker_info() is not None and hasattr(genome, "path"):
            # Forked workers would share the FASTA's file offset with the parent: give each its own handle.
            from .genome import Genome

            genome = Genome(genome.path)
        examples = (
            self._decode(index, payload, path, number, genome)
            for index, payload, path, number in self._records(shard)
        )
        if self.shuffle_buffer:
            rng = np.random.default_rng([self.seed, self.epoch, 2, self.rank, shard.worker])
            examples = _shuffled(examples, self.shuffle_buffer, rng)
        for example in examples:
            yield self.transform(example) if self.transform is not None else example

    def _decode(self, index: int, payload: bytes, path: Path, number: int, genome: Any) -> dict[str, Any]:
        try:
            sequence, target = decode_example(payload, self.record_length, self.target_length, self.num_targets)
        except (ValueError, UserError) as error:
            raise TFRecordError(f"{path}: record {number} (example {index} of {self.split}): {error}") from None
        interval = ""
        if self.intervals is not None:
            row = self.intervals.iloc[index]
            start = int(row.start) - self.flank_bp
            interval = f"{row.chrom}:{start}-{start + self.sequence_length}"
        if self.flank_bp > 0:
            one_hot = self._extend(sequence, index, interval, genome)
        elif self.flank_bp < 0:
            one_hot = sequence[-self.flank_bp : self.record_length + self.flank_bp].astype(np.float32)
        else:
            one_hot = sequence.astype(np.float32)
        return {
            "sequence": torch.from_numpy(one_hot),
            "target": torch.from_numpy(target.astype(np.float32)),
            "index": index,
            "interval": interval,
        }

    def _extend(self, record: np.ndarray, index: int, interval: str, genome: Any) -> np.ndarray:
        flank = self.flank_bp
        if genome is None:
            one_hot = np.zeros((self.sequence_length, 4), dtype=np.float32)
            one_hot[flank : flank + self.record_length] = record
            return one_hot
        from ..sequence import one_hot as encode

        row = self.intervals.iloc[index]
        fetched = genome.fetch(_interval(row.chrom, int(row.start) - flank, int(row.end) + flank))
        if len(fetched) != self.sequence_length:
            raise UserError(f"example {index} ({interval}): the genome returned {len(fetched)} bp, expected {self.sequence_length}")
        one_hot = encode(fetched).numpy()
        if self.check_sequence:
            centre = one_hot[flank : flank + self.record_length]
            mismatch = np.flatnonzero((centre != record).any(axis=1))
            if mismatch.size:
                raise UserError(
                    f"example {index} of {self.split} ({row.chrom}:{row.start}-{row.end}): the genome differs from the "
                    f"TFRecord sequence at {mismatch.size:,} of {self.record_length:,} positions (first at offset "
                    f"{int(mismatch[0]):,}); is it the assembly the data was made from?"
                )
        return one_hot


def _shuffled(items: Iterator[Any], buffer_size: int, rng: np.random.Generator) -> Iterator[Any]:
    """tf.data-style shuffle buffer: hold ``buffer_size`` items, emit a random one as each new one arrives."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        slot = int(rng.integers(buffer_size))
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


def _interval(chrom: str, start: int, end: int):
    from .genome import Interval

    return Interval(str(chrom), start, end)


def _open_genome(genome: Any):
    if isinstance(genome, (str, os.PathLike)):
        from .genome import Genome

        return Genome(genome)
    if not hasattr(genome, "fetch"):
        raise ValueError(f"genome must be a FASTA path or a Genome, got {type(genome).__name__}")
    return genome


"""The DataLoader ``collate_fn`` for :class:`BasenjiDataset` (the one batch stacker under its documented name):
tensors along a new batch axis, ``index`` as a LongTensor, ``interval`` as a list."""


# The writer --------------------------------------------------------------------------------------------

class BasenjiWriter:
    """Write a Basenji2 directory: ``add()`` examples split by split, ``close()`` writes the tables.

    Args:
        directory: output directory (created).
        targets: the track table, written as ``targets.txt`` (columns of :data:`tracks.TARGETS_COLUMNS`;
            missing ones filled with Basenji defaults).
        seq_length, crop_bp, pool_width: the geometry; ``target_length = (seq_length - 2 crop_bp) / pool_width``.
        records_per_file: records per TFRecord file (Basenji2 used 256).
        compression: ``zlib`` like Basenji2.
    Examples of a split must be added in ``sequences.bed`` order; the splits may interleave.
    ``statistics.json`` is written last, so a directory without it is incomplete; ``{split}-N.tfr`` files
    of an earlier dataset in the same directory are removed on close.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        targets: pd.DataFrame,
        seq_length: int,
        crop_bp: int,
        pool_width: int = 128,
        records_per_file: int = 256,
        compression: str = "zlib",
        extra_statistics: dict[str, Any] | None = None,
    ):
        if (seq_length - 2 * crop_bp) <= 0 or (seq_length - 2 * crop_bp) % pool_width:
            raise ValueError(
                f"seq_length {seq_length} - 2 * crop_bp {crop_bp} must be a positive multiple of pool_width {pool_width}"
            )
        if records_per_file < 1:
            raise ValueError(f"records_per_file must be >= 1, got {records_per_file}")
        self.directory = Path(directory)
        (self.directory / "tfrecords").mkdir(parents=True, exist_ok=True)
        self.targets = _complete_targets(targets)
        self.seq_length, self.crop_bp, self.pool_width = seq_length, crop_bp, pool_width
        self.target_length = (seq_length - 2 * crop_bp) // pool_width
        self.records_per_file = records_per_file
        self.compression = compression
        self.extra_statistics = dict(extra_statistics or {})
        self._writers: dict[str, TFRecordWriter] = {}
        self._files: dict[str, int] = {}
        self._rows: dict[str, list[tuple[str, int, int, str]]] = {}

    def add(self, split: str, interval: tuple[str, int, int], sequence: np.ndarray, target: np.ndarray) -> None:
        """Append one example: ``interval`` (chrom, start, end) of ``seq_length`` bp, one-hot ``(seq_length, 4)``,
        target ``(target_length, num_targets)``."""
        chrom, start, end = interval
        if end - start != self.seq_length or len(sequence) != self.seq_length:
            raise ValueError(f"{chrom}:{start}-{end}: expected {self.seq_length} bp, got {end - start} / {len(sequence)}")
        if tuple(np.shape(target)) != (self.target_length, len(self.targets)):
            raise ValueError(f"target shape {np.shape(target)} != ({self.target_length}, {len(self.targets)})")
        rows = self._rows.setdefault(split, [])
        if len(rows) % self.records_per_file == 0:
            self._close_writer(split)
            number = self._files.get(split, 0)
            self._writers[split] = TFRecordWriter(self.directory / "tfrecords" / f"{split}-{number}.tfr", self.compression)
            self._files[split] = number + 1
        self._writers[split].write(encode_example(sequence, target))
        rows.append((str(chrom), int(start), int(end), split))

    def _close_writer(self, split: str) -> None:
        writer = self._writers.pop(split, None)
        if writer is not None:
            writer.close()

    def close(self) -> Path:
        for split in list(self._writers):
            self._close_writer(split)
        # Shards left by an earlier, larger dataset in the same directory would join this one's splits.
        written = {f"{split}-{number}.tfr" for split, count in self._files.items() for number in range(count)}
        for path in (self.directory / "tfrecords").iterdir():
            if _SHARD_PATTERN.match(path.name) and path.name not in written:
                path.unlink()
        order = [s for s in SPLITS if s in self._rows] + sorted(s for s in self._rows if s not in SPLITS)
        bed = "".join(f"{c}\t{s}\t{e}\t{label}\n" for split in order for c, s, e, label in self._rows[split])
        atomic_write_text(self.directory / "sequences.bed", bed)
        table = self.targets.copy()
        table["index"] = range(len(table))
        atomic_write_text(self.directory / "targets.txt", table[list(TARGETS_COLUMNS)].to_csv(sep="\t", index=False))
        statistics = {
            "num_targets": len(self.targets),
            "seq_length": self.seq_length,
            "pool_width": self.pool_width,
            "crop_bp": self.crop_bp,
            "target_length": self.target_length,
            **{f"{split}_seqs": len(self._rows.get(split, [])) for split in SPLITS},
            **{f"{split}_seqs": len(rows) for split, rows in self._rows.items() if split not in SPLITS},
            **self.extra_statistics,
        }
        write_json(self.directory / "statistics.json", statistics)
        return self.directory

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
        self._writers.clear()

    def __enter__(self) -> "BasenjiWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _complete_targets(targets: pd.DataFrame) -> pd.DataFrame:
    table = targets.reset_index(drop=True).copy()
    for column in ("identifier", "description"):
        if column not in table.columns:
            raise UserError(f"targets table needs an {column!r} column")
    defaults = {"genome": 0, "file": ".", "clip": 32, "scale": 2, "sum_stat": "mean"}
    for column, value in defaults.items():
        if column not in table.columns:
            table[column] = value
    return table
