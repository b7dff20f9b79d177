"""A seeded synthetic genome with tracks that need long-range context, in the exact Basenji2 layout.

Output directory (readable by :class:`senformer.data.basenji.BasenjiDataset` and ``senformer evaluate``)::

    genome.fa, genome.fa.fai         random chromosomes with planted motifs (and a few N runs)
    statistics.json, targets.txt, sequences.bed, tfrecords/{train,valid,test}-N.tfr   (Basenji2 layout)
    synthetic.json                   the generative model: motifs, track roles, long-range tracks, settings

Generative model
----------------
1. Chromosomes of i.i.d. bases (GC 42%). Eight motifs (random 10-mers) are planted at Poisson rate
   ``motif_rate`` per kb each, in random orientation; afterwards occurrences are found by exact search on
   both strands, so the truth is what the sequence holds. Roles: motifs 0-1 *promoters*, 2-3 *enhancers*,
   4-7 *TF sites*.
2. Per 128-bp bin ``b`` and motif ``m``: ``count[m, b]`` occurrences. Three kernels along the bins:
   ``sharp`` ([0.25, 1, 0.25]), ``broad`` (Gaussian, sigma 4 bins = 0.5 kb) and ``ring`` (1 for distances in ``long_range_bp`` = [near, far],
   0 elsewhere). The conv tower of Enformer sees about +-0.4 kb around a bin (stem width 15, width-5 convs
   at 2..64 bp resolution, poolings), so with ``near`` >= 1 kb only attention can link a promoter to
   its enhancers.
   ``long_range_signals`` (default ``("band",)``) grades how distance-specific the distal term is; the
   long-range tracks of each kind take the signals in turn (each signal its own set of tracks), and every
   signal's kernel has the ring's total weight:
   - ``band``: the ring (a hard band near..far; a layer without positions cannot represent it);
   - ``decay``: a contact-frequency-like power law ``(|d| / near) ** -decay_exponent`` from ``near`` to half
     a record (soft distance-specificity);
   - ``count``: a flat weight from ``near`` to half a record (distance-agnostic beyond the conv tower's
     reach: any attention layer, with or without positions, can count).
3. Expected signal per track (``r`` = replicate number, tracks cycle through the four assay groups):
   - DNase/ATAC: ``sharp(sum_m w_rm count_m)`` over all motifs (local accessibility).
   - ChIP-TF: ``sharp(count_tf) * (1 + 0.5 sharp(count_partner))`` for TF motif ``4 + r mod 4`` (local,
     cooperative).
   - ChIP-Histone: even ``r`` ``broad(promoters + enhancers)`` (local); odd ``r``
     ``broad(promoters) * ring(enhancers)`` (LONG-RANGE: marks promoters with distal enhancers).
   - CAGE: ``sharp(count_promoter) * (baseline + ring(enhancers))`` for promoter motif ``r mod 2``
     (LONG-RANGE: a promoter is expressed only with enhancers ``near..far`` bp away; ``long_range_baseline``,
     0.2 unless set; ``cage_kernel="broad"`` spreads the same total signal over the broad kernel).
     Enhancer motifs are planted at ``enhancer_rate`` per kb when set (else ``motif_rate``).
4. Observation: ``value = min(Poisson(k * (background + amplitude * signal)) / k, clip) * scale`` with
   ``k = 4`` (noise), Basenji's clip/scale (mean tracks clip 32 scale 2; CAGE sum tracks clip 384 scale 1),
   stored as float16 like Basenji2.

Examples are non-overlapping windows of ``sequence_length`` bp tiled along the chromosomes (a margin at
each chromosome end, so inputs extended from the genome get both real flanks and N padding), split
by chromosome into train / valid / test. Targets cover the central ``sequence_length - 2 crop_bp``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..io import atomic_path, atomic_write_text, write_json
from .tracks import ASSAY_GROUPS

# ``sequence`` and ``basenji`` (torch) are imported where used: ``senformer data synthetic --help`` reads SIZES
# from this module and must answer without importing torch.

BIN = 128
MOTIF_LENGTH = 10
NUM_MOTIFS = 8
PROMOTERS, ENHANCERS, TF_SITES = (0, 1), (2, 3), (4, 5, 6, 7)
LONG_RANGE_SIGNALS = ("band", "decay", "count")  # graded distance-specificity, most specific first


@dataclass(frozen=True)
class SyntheticSettings:
    """Sizes and lengths of a synthetic dataset; ``SIZES`` holds the named ones."""

    sequence_length: int = 4096
    crop_bp: int = 1024
    num_tracks: int = 8
    train: int = 8
    valid: int = 4
    test: int = 4
    windows_per_chromosome: int = 4
    records_per_file: int = 4
    long_range_bp: tuple[int, int] = (1024, 2048)
    motif_rate: float = 0.3  # occurrences per kb per motif
    noise: float = 4.0  # Poisson counts per unit of signal: larger = cleaner tracks
    # Occurrences per kb of each enhancer motif (None: motif_rate). Rarer enhancers make "is there one
    # near..far bp away" a coin flip rather than a near certainty, so the long-range tracks need attention.
    enhancer_rate: float | None = None
    # CAGE signal of a promoter with no enhancer near..far bp away, relative to one enhancer there.
    long_range_baseline: float = 0.2
    # Kernel spreading a promoter's CAGE signal along the bins: "sharp" (3 bins) or "broad" (sigma 4 bins,
    # the same total). A broad peak gives the distal-enhancer dependence many bins of signal instead of one.
    cage_kernel: str = "sharp"
    # The distal terms of the long-range tracks (see the module's generative model): "band", "decay", "count".
    long_range_signals: tuple[str, ...] = ("band",)
    decay_exponent: float = 1.0  # "decay": weight (|d| / near) ** -exponent

    @property
    def target_length(self) -> int:
        return (self.sequence_length - 2 * self.crop_bp) // BIN

    def validate(self) -> None:
        problems = []
        if self.sequence_length % BIN or self.sequence_length <= 0:
            problems.append(f"sequence_length {self.sequence_length} must be a positive multiple of {BIN}")
        if self.crop_bp % BIN or self.crop_bp < 0 or self.sequence_length - 2 * self.crop_bp <= 0:
            problems.append(f"crop_bp {self.crop_bp} must be a multiple of {BIN} leaving a positive centre")
        if self.num_tracks < 4:
            problems.append(f"num_tracks {self.num_tracks} must be >= 4 (one per assay group)")
        near, far = self.long_range_bp
        if not 0 < near < far:
            problems.append(f"long_range_bp {self.long_range_bp} must satisfy 0 < near < far")
        if min(self.train, self.valid, self.test) < 0 or self.train + self.valid + self.test == 0:
            problems.append("train/valid/test counts must be >= 0 and not all 0")
        if self.enhancer_rate is not None and self.enhancer_rate < 0:
            problems.append(f"enhancer_rate {self.enhancer_rate} must be >= 0 or None (motif_rate)")
        if self.cage_kernel not in ("sharp", "broad"):
            problems.append(f"cage_kernel {self.cage_kernel!r} must be sharp or broad")
        if not self.long_range_signals or len(set(self.long_range_signals)) != len(self.long_range_signals) or \
                any(signal not in LONG_RANGE_SIGNALS for signal in self.long_range_signals):
            problems.append(f"long_range_signals {list(self.long_range_signals)} must be distinct names from "
                            f"{', '.join(LONG_RANGE_SIGNALS)}")
        if self.decay_exponent <= 0:
            problems.append(f"decay_exponent {self.decay_exponent} must be positive")
        if self.long_range_baseline < 0:
            problems.append(f"long_range_baseline {self.long_range_baseline} must be >= 0")
        if self.windows_per_chromosome < 1 or self.records_per_file < 1:
            problems.append("windows_per_chromosome and records_per_file must be >= 1")
        if problems:
            raise UserError("invalid synthetic settings: " + "; ".join(problems))


SIZES: dict[str, SyntheticSettings] = {
    # Tests: a few examples of 4 kb, 16 bins (runs in well under a second).
    "tiny": SyntheticSettings(),
    # Demo and training: 480 examples of 8 kb, 32 bins x 16 tracks; enhancers 1.5-3 kb from promoters,
    # beyond the conv tower's reach. About 10 s to write.
    "small": SyntheticSettings(
        sequence_length=8192, crop_bp=2048, num_tracks=16, train=384, valid=48, test=48,
        windows_per_chromosome=48, records_per_file=64, long_range_bp=(1536, 3072),
    ),
    # The accuracy study (issue 14): the small geometry with enhancers from just past a BigBird window of
    # 3 blocks of 2 positions (+-3 bins) to a third of the input, and rare enhancers (P(none in range) ~ 0.35)
    # and a low baseline, so a promoter's CAGE and H3K4me1 signal turn on or off with distant enhancers;
    # broad CAGE peaks, because a small model trained for ~1,000 steps learns the distal dependence of a
    # broad peak (as of H3K4me1) but not of a 3-bin one. 256 validation and test records.
    "study": SyntheticSettings(
        sequence_length=8192, crop_bp=2048, num_tracks=16, train=2048, valid=256, test=256,
        windows_per_chromosome=64, records_per_file=256, long_range_bp=(512, 2816), enhancer_rate=0.1,
        long_range_baseline=0.05, cage_kernel="broad",
    ),
    # The real record geometry (131,072 bp, 896 bins) with enhancers tens of kb away.
    "medium": SyntheticSettings(
        sequence_length=131_072, crop_bp=8192, num_tracks=32, train=64, valid=8, test=8,
        windows_per_chromosome=8, records_per_file=32, long_range_bp=(16_384, 40_960),
    ),
}


@dataclass
class _Track:
    identifier: str
    description: str
    group: str
    kind: str
    motifs: list[int]
    long_range: bool
    sum_stat: str
    clip: float
    scale: float
    background: float
    amplitude: float
    weights: list[float] = field(default_factory=list)
    signal: str = "band"  # long-range tracks: which distal kernel (LONG_RANGE_SIGNALS)


def _motifs(rng: np.random.Generator) -> list[str]:
    from ..sequence import reverse_complement

    motifs: list[str] = []
    while len(motifs) < NUM_MOTIFS:
        motif = "".join(rng.choice(list("ACGT"), MOTIF_LENGTH))
        if motif != reverse_complement(motif) and all(motif not in (m, reverse_complement(m)) for m in motifs):
            motifs.append(motif)
    return motifs


def _tracks(settings: SyntheticSettings, rng: np.random.Generator) -> list[_Track]:
    tracks = []
    signals = settings.long_range_signals
    turn = {"histone-long": 0, "cage": 0}  # each long-range kind takes the signals in turn

    def next_signal(kind: str) -> str:
        signal = signals[turn[kind] % len(signals)]
        turn[kind] += 1
        return signal

    def named(description: str, signal: str) -> str:
        # The band's tracks keep their old description: a default dataset is byte-identical to before.
        return description if signal == "band" else f"{description} ({signal})"

    for number in range(settings.num_tracks):
        group, replicate = ASSAY_GROUPS[number % 4], number // 4
        identifier = f"SYN{number:04d}"
        if group == "DNase/ATAC":
            prefix = "DNASE" if replicate % 2 == 0 else "ATAC"
            tracks.append(_Track(identifier, f"{prefix}:synthetic accessibility {replicate}", group, "accessibility",
                                 list(range(NUM_MOTIFS)), False, "mean", 32, 2, 0.05, 3.0,
                                 rng.uniform(0.5, 1.5, NUM_MOTIFS).round(3).tolist()))
        elif group == "ChIP-TF":
            tf = TF_SITES[replicate % 4]
            partner = TF_SITES[(replicate + 1) % 4]
            tracks.append(_Track(identifier, f"CHIP:TF{tf}:synthetic cooperative binding {replicate}", group, "tf",
                                 [tf, partner], False, "mean", 32, 2, 0.05, 4.0))
        elif group == "ChIP-Histone":
            long_range = replicate % 2 == 1
            mark = "H3K4me1" if long_range else "H3K27ac"
            detail = "promoters with distal enhancers" if long_range else "promoters and enhancers"
            signal = next_signal("histone-long") if long_range else "band"
            tracks.append(_Track(identifier, named(f"CHIP:{mark}:synthetic {detail} {replicate}", signal), group,
                                 "histone-long" if long_range else "histone", [*PROMOTERS, *ENHANCERS], long_range,
                                 "mean", 32, 2, 0.1, 3.0, signal=signal))
        else:
            promoter = PROMOTERS[replicate % 2]
            signal = next_signal("cage")
            tracks.append(_Track(identifier, named(f"CAGE:synthetic promoter {promoter} with distal enhancers {replicate}",
                                                   signal), group, "cage", [promoter, *ENHANCERS], True, "sum", 384, 1,
                                 0.2, 20.0, signal=signal))
    return tracks


def _chromosome(length: int, motifs: list[str], settings: SyntheticSettings, rng: np.random.Generator, n_runs: int) -> str:
    from ..sequence import reverse_complement

    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    sequence = bases[rng.choice(4, length, p=[0.29, 0.21, 0.21, 0.29])].copy()
    for index, motif in enumerate(motifs):
        rate = settings.enhancer_rate if index in ENHANCERS and settings.enhancer_rate is not None else settings.motif_rate
        count = rng.poisson(rate * length / 1000)
        for position in rng.integers(0, length - MOTIF_LENGTH, count):
            text = motif if rng.random() < 0.5 else reverse_complement(motif)
            sequence[position : position + MOTIF_LENGTH] = np.frombuffer(text.encode(), dtype=np.uint8)
    for _ in range(n_runs):  # assembly gaps: N runs that the one-hot turns into zeros
        start = int(rng.integers(0, length - 300))
        sequence[start : start + int(rng.integers(50, 300))] = ord("N")
    return sequence.tobytes().decode("ascii")


def _motif_counts(sequence: str, motifs: list[str]) -> np.ndarray:
    """(motifs, bins) occurrences on either strand, by the bin of the motif's centre."""
    from ..sequence import reverse_complement

    bins = len(sequence) // BIN
    counts = np.zeros((len(motifs), bins), dtype=np.float64)
    for index, motif in enumerate(motifs):
        for pattern in {motif, reverse_complement(motif)}:
            start = sequence.find(pattern)
            while start != -1:
                centre_bin = (start + MOTIF_LENGTH // 2) // BIN
                if centre_bin < bins:
                    counts[index, centre_bin] += 1
                start = sequence.find(pattern, start + 1)
    return counts


def _convolve(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Same-length convolution along the last axis with a centred odd-length kernel (zeros beyond the ends),
    also when the kernel is longer than the signal (where ``np.convolve(mode="same")`` would not keep the length)."""
    offset = (len(kernel) - 1) // 2
    return np.apply_along_axis(lambda row: np.convolve(row, kernel)[offset : offset + len(row)], -1, signal)


def _kernels(settings: SyntheticSettings) -> dict[str, np.ndarray]:
    distances = np.arange(-24, 25)
    near, far = (value // BIN for value in settings.long_range_bp)
    ring_distances = np.arange(-far, far + 1)
    ring = ((np.abs(ring_distances) >= near) & (np.abs(ring_distances) <= far)).astype(np.float64)
    kernels = {
        "sharp": np.array([0.25, 1.0, 0.25]),
        "broad": np.exp(-0.5 * (distances / 4.0) ** 2),
        "ring": ring,
    }
    # The graded signals reach half a record (all the input that the record's centre sees on each side);
    # each has the ring's total weight, so the distal term's scale (and the tracks' signal-to-noise) stays
    # the band's and only its shape over distance changes.
    span = max(far, settings.sequence_length // (2 * BIN))
    whole = np.abs(np.arange(-span, span + 1))
    beyond = whole >= near
    shapes = {"decay": np.where(beyond, (np.maximum(whole, 1) / near) ** -settings.decay_exponent, 0.0),
              "count": beyond.astype(np.float64)}
    for signal in settings.long_range_signals:
        if signal != "band":
            kernels[f"ring/{signal}"] = shapes[signal] * (ring.sum() / shapes[signal].sum())
    return kernels


def _expected_signal(track: _Track, counts: np.ndarray, kernels: dict[str, np.ndarray], long_range_baseline: float = 0.2,
                     cage_kernel: str = "sharp") -> np.ndarray:
    sharp, broad = kernels["sharp"], kernels["broad"]
    ring = kernels["ring"] if track.signal == "band" else kernels[f"ring/{track.signal}"]
    promoters = counts[list(PROMOTERS)].sum(axis=0)
    enhancers = counts[list(ENHANCERS)].sum(axis=0)
    if track.kind == "accessibility":
        return _convolve(np.asarray(track.weights) @ counts, sharp)
    if track.kind == "tf":
        tf, partner = track.motifs
        return _convolve(counts[tf], sharp) * (1.0 + 0.5 * _convolve(counts[partner], sharp))
    if track.kind == "histone":
        return _convolve(promoters + enhancers, broad) / 2.0
    if track.kind == "histone-long":
        return _convolve(promoters, broad) * _convolve(enhancers, ring) / 2.0
    if track.kind == "cage":
        # Either kernel carries the same total signal per promoter (the sharp kernel's sum), so a broad
        # peak is lower and wider, not larger: the CAGE scale and its weight in the Poisson loss stay put.
        kernel = kernels[cage_kernel] * (sharp.sum() / kernels[cage_kernel].sum())
        return _convolve(counts[track.motifs[0]], kernel) * (long_range_baseline + _convolve(enhancers, ring))
    raise AssertionError(track.kind)


def make_synthetic(out_dir: str | os.PathLike, size: str = "tiny", seed: int = 0, **lengths: Any) -> Path:
    """Write a synthetic Basenji2-layout dataset into ``out_dir`` and return its path.

    Args:
        out_dir: output directory (created; existing dataset files are replaced).
        size: ``tiny`` (tests), ``small`` (demo, training), ``study`` (the accuracy study) or ``medium``
            (131,072 bp records); see :data:`SIZES`.
        seed: seeds the genome, motifs, track parameters and noise.
        **lengths: override any :class:`SyntheticSettings` field, e.g. ``sequence_length=16384, crop_bp=4096,
            num_tracks=8, train=100, long_range_bp=(2048, 4096)``.
    """
    from ..sequence import one_hot_array
    from .basenji import BasenjiWriter

    if size not in SIZES:
        raise UserError(f"unknown synthetic size {size!r}; choose one of {', '.join(SIZES)}")
    known = set(SyntheticSettings.__dataclass_fields__)
    unknown = sorted(set(lengths) - known)
    if unknown:
        raise UserError(f"unknown synthetic setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "long_range_bp" in lengths:
        lengths["long_range_bp"] = tuple(int(v) for v in lengths["long_range_bp"])
    if "long_range_signals" in lengths:
        lengths["long_range_signals"] = tuple(str(v) for v in lengths["long_range_signals"])
    settings = replace(SIZES[size], **lengths)
    settings.validate()

    rng = np.random.default_rng(seed)
    motifs = _motifs(rng)
    tracks = _tracks(settings, rng)
    kernels = _kernels(settings)
    margin = max(BIN, (settings.sequence_length // 8) // BIN * BIN)  # some real flank, then N beyond the end

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = pd.DataFrame({
        "identifier": [t.identifier for t in tracks],
        "file": [f"synthetic://{t.kind}" for t in tracks],
        "clip": [t.clip for t in tracks], "scale": [t.scale for t in tracks],
        "sum_stat": [t.sum_stat for t in tracks], "description": [t.description for t in tracks],
    })
    chromosomes: list[tuple[str, str]] = []
    crop_bins = settings.crop_bp // BIN
    with BasenjiWriter(out, targets, settings.sequence_length, settings.crop_bp, BIN, settings.records_per_file) as writer:
        for split in ("train", "valid", "test"):
            remaining = getattr(settings, split)
            while remaining > 0:
                windows = min(remaining, settings.windows_per_chromosome)
                name = f"chr{len(chromosomes) + 1}"
                length = windows * settings.sequence_length + 2 * margin
                sequence = _chromosome(length, motifs, settings, rng, n_runs=1 + windows // 16)
                chromosomes.append((name, sequence))
                values = _observe(tracks, _motif_counts(sequence, motifs), kernels, settings, rng)
                for window in range(windows):
                    start = margin + window * settings.sequence_length
                    end = start + settings.sequence_length
                    one_hot = one_hot_array(sequence[start:end])
                    first = start // BIN + crop_bins
                    writer.add(split, (name, start, end), one_hot, values[first : first + settings.target_length])
                remaining -= windows
    _write_fasta(out / "genome.fa", chromosomes)
    graded = settings.long_range_signals != ("band",)
    metadata = {
        "size": size, "seed": seed, "settings": _settings_record(settings), "target_length": settings.target_length,
        "motifs": motifs, "motif_roles": {"promoter": list(PROMOTERS), "enhancer": list(ENHANCERS), "tf": list(TF_SITES)},
        "tracks": [asdict(t) if graded else {k: v for k, v in asdict(t).items() if k != "signal"} for t in tracks],
        "long_range_tracks": [i for i, t in enumerate(tracks) if t.long_range],
        **({"long_range_signals": long_range_signal_tracks(tracks)} if graded else {}),
        "chromosomes": {name: len(sequence) for name, sequence in chromosomes},
    }
    write_json(out / "synthetic.json", metadata)
    return out


def long_range_signal_tracks(tracks) -> dict[str, list[int]]:
    """Signal name -> the indices of its long-range tracks (``tracks``: _Track objects or synthetic.json's
    track records), in LONG_RANGE_SIGNALS order."""
    def value(track, name):
        return track[name] if isinstance(track, dict) else getattr(track, name)

    found = {signal: [i for i, t in enumerate(tracks) if value(t, "long_range") and
                      (value(t, "signal") if not isinstance(t, dict) else t.get("signal", "band")) == signal]
             for signal in LONG_RANGE_SIGNALS}
    return {signal: indices for signal, indices in found.items() if indices}


def _settings_record(settings: SyntheticSettings) -> dict[str, Any]:
    """The settings as synthetic.json keeps them: the graded-signal fields only where they differ from the
    defaults, so a default dataset's synthetic.json is byte-identical to one written before they existed."""
    record = asdict(settings)
    defaults = SyntheticSettings()
    for name in ("long_range_signals", "decay_exponent"):
        if getattr(settings, name) == getattr(defaults, name):
            del record[name]
    return record


def _observe(tracks: list[_Track], counts: np.ndarray, kernels, settings: SyntheticSettings, rng) -> np.ndarray:
    """(bins, tracks) stored values: Poisson noise around the expected signal, clipped and scaled."""
    columns = []
    for track in tracks:
        signal = _expected_signal(track, counts, kernels, settings.long_range_baseline, settings.cage_kernel)
        expected = track.background + track.amplitude * signal
        observed = rng.poisson(settings.noise * expected) / settings.noise
        columns.append(np.minimum(observed, track.clip) * track.scale)
    return np.stack(columns, axis=1).astype(np.float32)


def _write_fasta(path: Path, chromosomes: list[tuple[str, str]], width: int = 80) -> None:
    """FASTA and its samtools ``.fai`` index (name, length, offset, bases per line, bytes per line)."""
    index_lines = []
    offset = 0
    with atomic_path(path) as temporary, open(temporary, "w", encoding="ascii") as handle:
        for name, sequence in chromosomes:
            header = f">{name}\n"
            handle.write(header)
            offset += len(header)
            index_lines.append(f"{name}\t{len(sequence)}\t{offset}\t{width}\t{width + 1}\n")
            for start in range(0, len(sequence), width):
                line = sequence[start : start + width] + "\n"
                handle.write(line)
                offset += len(line)
    atomic_write_text(Path(f"{path}.fai"), "".join(index_lines))
