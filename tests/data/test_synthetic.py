"""The synthetic long-range dataset: layout, determinism, round trip and the generative model."""

import json

import numpy as np
import pytest
import torch

from senformer.cli import main
from senformer.data.basenji import BasenjiDataset, check_split, read_sequences_bed, read_statistics
from senformer.data.synthetic import SIZES, _convolve, _kernels, make_synthetic
from senformer.data.tracks import ASSAY_GROUPS, read_targets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "tiny", "tiny", seed=0)


def test_tiny_layout_is_basenji2(tiny):
    names = sorted(p.name for p in tiny.iterdir())
    assert names == ["genome.fa", "genome.fa.fai", "sequences.bed", "statistics.json", "synthetic.json", "targets.txt", "tfrecords"]
    statistics = read_statistics(tiny)
    assert statistics == {"num_targets": 8, "seq_length": 4096, "pool_width": 128, "crop_bp": 1024, "target_length": 16,
                          "train_seqs": 8, "valid_seqs": 4, "test_seqs": 4}
    assert sorted(p.name for p in (tiny / "tfrecords").iterdir()) == ["test-0.tfr", "train-0.tfr", "train-1.tfr", "valid-0.tfr"]
    assert (tiny / "tfrecords" / "train-0.tfr").read_bytes()[:2] == b"\x78\x9c"  # ZLIB like Basenji2
    targets = read_targets(tiny / "targets.txt")
    assert list(targets["assay_group"]) == list(ASSAY_GROUPS) * 2
    for split in ("train", "valid", "test"):
        assert check_split(tiny, split) == statistics[f"{split}_seqs"]


def test_round_trip_records_match_genome_and_bed(tiny):
    import pyfaidx

    genome = pyfaidx.Fasta(str(tiny / "genome.fa"))
    bed = read_sequences_bed(tiny, "test")
    for example in BasenjiDataset(tiny, "test"):
        row = bed.iloc[example["index"]]
        assert example["interval"] == f"{row.chrom}:{row.start}-{row.end}"
        text = str(genome[row.chrom][int(row.start) : int(row.end)]).upper()
        expected = torch.zeros(len(text), 4)
        for channel, base in enumerate("ACGT"):
            expected[[i for i, b in enumerate(text) if b == base], channel] = 1
        assert torch.equal(example["sequence"], expected)
        assert example["target"].shape == (16, 8) and torch.isfinite(example["target"]).all()
        assert (example["target"] >= 0).all()


def test_seeded_and_deterministic(tmp_path, tiny):
    again = make_synthetic(tmp_path / "again", "tiny", seed=0)
    other = make_synthetic(tmp_path / "other", "tiny", seed=1)
    for name in ("train-0.tfr", "test-0.tfr"):
        assert (again / "tfrecords" / name).read_bytes() == (tiny / "tfrecords" / name).read_bytes()
        assert (other / "tfrecords" / name).read_bytes() != (tiny / "tfrecords" / name).read_bytes()
    assert (again / "genome.fa").read_bytes() == (tiny / "genome.fa").read_bytes()


def test_rewriting_a_directory_removes_stale_shards(tmp_path):
    make_synthetic(tmp_path / "d", "tiny", train=12, records_per_file=2)
    assert len(list((tmp_path / "d" / "tfrecords").glob("train-*.tfr"))) == 6
    make_synthetic(tmp_path / "d", "tiny", train=4, records_per_file=2)
    assert sorted(p.name for p in (tmp_path / "d" / "tfrecords").glob("train-*.tfr")) == ["train-0.tfr", "train-1.tfr"]
    assert len(list(BasenjiDataset(tmp_path / "d", "train"))) == 4


def test_lengths_are_parameters(tmp_path):
    out = make_synthetic(tmp_path / "long", "tiny", seed=0, sequence_length=6144, crop_bp=1536, num_tracks=4,
                         train=3, valid=1, test=1, records_per_file=2, long_range_bp=(1024, 1536))
    statistics = read_statistics(out)
    assert (statistics["seq_length"], statistics["target_length"], statistics["num_targets"]) == (6144, 24, 4)
    example = next(iter(BasenjiDataset(out, "train")))
    assert example["sequence"].shape == (6144, 4) and example["target"].shape == (24, 4)
    metadata = json.loads((out / "synthetic.json").read_text())
    assert metadata["settings"]["long_range_bp"] == [1024, 1536]
    assert metadata["long_range_tracks"] == [3]  # the CAGE track
    with pytest.raises(ValueError, match="unknown synthetic setting"):
        make_synthetic(tmp_path / "bad", "tiny", windows=3)
    with pytest.raises(ValueError, match="sequence_length 1000 must be a positive multiple of 128"):
        make_synthetic(tmp_path / "bad", "tiny", sequence_length=1000)
    with pytest.raises(ValueError, match="unknown synthetic size 'huge'"):
        make_synthetic(tmp_path / "bad", "huge")


def test_long_range_tracks_depend_on_distant_enhancers(tiny):
    metadata = json.loads((tiny / "synthetic.json").read_text())
    assert metadata["long_range_tracks"] == [3, 5, 7]  # CAGE x2 and the odd histone track
    near, far = metadata["settings"]["long_range_bp"]
    assert near >= 1024  # beyond the conv tower's ~0.4 kb reach on either side
    ring = _kernels(SIZES["tiny"])["ring"]
    distances = np.abs(np.arange(len(ring)) - len(ring) // 2) * 128
    assert ring[distances < near].sum() == 0 and ring[(distances >= near) & (distances <= far)].all()
    # An enhancer 12 bins away from a promoter raises the ring signal at the promoter, one 2 bins away does not.
    enhancers = np.zeros(64)
    enhancers[40] = 1
    signal = _convolve(enhancers[None], ring)[0]
    assert signal[40 - 12] == 1 and signal[40 - 2] == 0


def test_small_size_is_the_training_size():
    small = SIZES["small"]
    assert (small.sequence_length, small.target_length, small.num_tracks) == (8192, 32, 16)
    assert small.train + small.valid + small.test == 480
    assert small.long_range_bp[0] > 1024


def test_cli_writes_the_dataset(tmp_path, capsys):
    assert main(["data", "synthetic", str(tmp_path / "cli"), "--size", "tiny", "--seed", "2", "--train", "2",
                 "--valid", "1", "--test", "1"]) == 0
    assert "2/1/1 train/valid/test examples of 4,096 bp, 16 bins x 8 tracks" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "cli")]) == 0
    assert "train: 2 records OK in 1 files" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # --size lists its choices, so argparse refuses in one line
        main(["data", "synthetic", str(tmp_path / "bad"), "--size", "huge"])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("senformer data synthetic: error: argument --size: invalid "
                                                       "choice: 'huge' (choose from ")


def test_long_range_tracks_cannot_be_predicted_from_local_sequence():
    """On one chromosome of the small size, the true expected signal predicts every track well, while an
    oracle that ignores the distant enhancers (replaces the ring term by its mean) loses a lot on exactly
    the long-range tracks: the data rewards attention."""
    from senformer.data import synthetic

    settings = SIZES["small"]
    rng = np.random.default_rng(0)
    motifs = synthetic._motifs(rng)
    tracks = synthetic._tracks(settings, rng)
    kernels = _kernels(settings)
    sequence = synthetic._chromosome(48 * settings.sequence_length, motifs, settings, rng, n_runs=2)
    counts = synthetic._motif_counts(sequence, motifs)
    observed = synthetic._observe(tracks, counts, kernels, settings, rng)
    enhancers = counts[list(synthetic.ENHANCERS)].sum(axis=0)
    ring_mean = _convolve(enhancers[None], kernels["ring"])[0].mean()
    for number, track in enumerate(tracks):
        expected = synthetic._expected_signal(track, counts, kernels)
        r_true = np.corrcoef(expected, observed[:, number])[0, 1]
        assert r_true > 0.85, (number, track.kind, r_true)
        if not track.long_range:
            continue
        if track.kind == "cage":
            local = _convolve(counts[track.motifs[0]][None], kernels["sharp"])[0] * (0.2 + ring_mean)
        else:
            local = _convolve(counts[list(synthetic.PROMOTERS)].sum(axis=0)[None], kernels["broad"])[0] * ring_mean
        r_local = np.corrcoef(local, observed[:, number])[0, 1]
        assert r_true - r_local > 0.1, (number, track.kind, r_true, r_local)


def test_study_size_is_sparse_long_range_and_large_enough():
    """Issue 14's geometry: 64 positions of 128 bp, so BigBird blocks of 2 give 32 blocks of which a query
    block attends 3 window + 2 global + 3 random = 8, a quarter; enhancers from just past that window
    (+-3 positions) to at least a third of the input; 256 validation and test records."""
    study = SIZES["study"]
    positions = study.sequence_length // 128
    assert positions == 64 and positions // 2 == 32
    near, far = study.long_range_bp
    assert 3 * 128 < near <= 4 * 128 and far >= study.sequence_length / 3
    assert study.valid >= 256 and study.test >= 256
    assert study.enhancer_rate < study.motif_rate and study.long_range_baseline < 0.2 and study.cage_kernel == "broad"


def test_new_generator_settings_leave_the_other_sizes_unchanged(tmp_path, tiny):
    """enhancer_rate=None means motif_rate and long_range_baseline defaults to the old 0.2: spelling the old
    values out writes the same bytes, and the tiny/small/medium presets keep them."""
    for name in ("tiny", "small", "medium"):
        assert SIZES[name].enhancer_rate is None and SIZES[name].long_range_baseline == 0.2
        assert SIZES[name].cage_kernel == "sharp"
    spelled = make_synthetic(tmp_path / "spelled", "tiny", seed=0, enhancer_rate=0.3, long_range_baseline=0.2,
                             cage_kernel="sharp")
    for name in ("train-0.tfr", "test-0.tfr"):
        assert (spelled / "tfrecords" / name).read_bytes() == (tiny / "tfrecords" / name).read_bytes()
    assert (spelled / "genome.fa").read_bytes() == (tiny / "genome.fa").read_bytes()
    rarer = make_synthetic(tmp_path / "rarer", "tiny", seed=0, enhancer_rate=0.05)
    assert (rarer / "tfrecords" / "train-0.tfr").read_bytes() != (tiny / "tfrecords" / "train-0.tfr").read_bytes()
    with pytest.raises(ValueError, match="enhancer_rate -1"):
        make_synthetic(tmp_path / "bad", "tiny", enhancer_rate=-1)
    with pytest.raises(ValueError, match="cage_kernel 'wide' must be sharp or broad"):
        make_synthetic(tmp_path / "bad", "tiny", cage_kernel="wide")


def _oracle_gap(settings, windows: int = 48) -> tuple[float, float]:
    """Mean over the long-range tracks of r(expected, observed) and of the same for an oracle that knows
    everything but the distant enhancers (their ring term replaced by its mean), on one chromosome."""
    from senformer.data import synthetic

    rng = np.random.default_rng(0)
    motifs = synthetic._motifs(rng)
    tracks = synthetic._tracks(settings, rng)
    kernels = _kernels(settings)
    sequence = synthetic._chromosome(windows * settings.sequence_length, motifs, settings, rng, n_runs=2)
    counts = synthetic._motif_counts(sequence, motifs)
    observed = synthetic._observe(tracks, counts, kernels, settings, rng)
    ring_mean = _convolve(counts[list(synthetic.ENHANCERS)].sum(axis=0)[None], kernels["ring"])[0].mean()
    true, local = [], []
    for number, track in enumerate(tracks):
        if not track.long_range:
            continue
        expected = synthetic._expected_signal(track, counts, kernels, settings.long_range_baseline, settings.cage_kernel)
        if track.kind == "cage":
            kernel = kernels[settings.cage_kernel]
            without = _convolve(counts[track.motifs[0]][None], kernel)[0] * (settings.long_range_baseline + ring_mean)
        else:
            without = _convolve(counts[list(synthetic.PROMOTERS)].sum(axis=0)[None], kernels["broad"])[0] * ring_mean
        true.append(np.corrcoef(expected, observed[:, number])[0, 1])
        local.append(np.corrcoef(without, observed[:, number])[0, 1])
    return float(np.mean(true)), float(np.mean(local))


def test_study_size_makes_distant_enhancers_matter_more_than_small():
    """The tuning behind the study size: the local-only oracle loses about twice as much on the long-range
    tracks as on "small" (0.29 against 0.16 on this chromosome), while the true signal stays predictable."""
    true_small, local_small = _oracle_gap(SIZES["small"])
    true_study, local_study = _oracle_gap(SIZES["study"])
    assert true_study > 0.95 and true_small > 0.95
    assert true_study - local_study > 0.25
    assert true_study - local_study > 1.5 * (true_small - local_small)
