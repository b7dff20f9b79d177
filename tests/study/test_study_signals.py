"""The accuracy study's graded long-range signals (issue 23 item 1): band, decay and count, each its own
set of tracks; a default dataset byte-identical to the one written before they existed."""

import hashlib
import json

import numpy as np
import pytest

from senformer.data import synthetic
from senformer.data.basenji import BasenjiDataset
from senformer.data.synthetic import SIZES, SyntheticSettings, _kernels, long_range_signal_tracks, make_synthetic
from senformer.errors import UserError

GRADED = {"num_tracks": 24, "long_range_signals": ("band", "decay", "count")}
# Records long enough (64 bins) that the graded signals reach past the band's far edge (16 bins).
LONG = {**GRADED, "sequence_length": 8192, "crop_bp": 2048}


def _content_digest(folder) -> str:
    """The dataset's files and every record's targets (decoded: zlib's bytes may differ between builds)."""
    digest = hashlib.sha256()
    for name in ("genome.fa", "targets.txt", "synthetic.json", "sequences.bed", "statistics.json"):
        digest.update((folder / name).read_bytes())
    for split in ("train", "valid", "test"):
        for example in BasenjiDataset(folder, split):
            digest.update(example["target"].numpy().astype(np.float32).tobytes())
    return digest.hexdigest()


def test_the_default_dataset_is_byte_identical_to_the_one_before_graded_signals(tmp_path):
    # Written by the generator before long_range_signals existed (main at f270e47): the recorded study's
    # dataset must not move under it.
    folder = make_synthetic(tmp_path / "tiny", "tiny", seed=0)
    assert _content_digest(folder) == "f0d5fa6b5797ea7495d42c20f490ae12f555f638f9a8cfeb891add356e24a57c"
    assert "long_range_signals" not in json.loads((folder / "synthetic.json").read_text())


def test_each_signal_has_its_own_tracks_in_both_long_range_kinds(tmp_path):
    folder = make_synthetic(tmp_path / "graded", "tiny", seed=0, **GRADED)
    metadata = json.loads((folder / "synthetic.json").read_text())
    by_signal = metadata["long_range_signals"]
    assert list(by_signal) == ["band", "decay", "count"]
    assert sorted(i for tracks in by_signal.values() for i in tracks) == metadata["long_range_tracks"]
    for signal, tracks in by_signal.items():
        kinds = sorted(metadata["tracks"][i]["kind"] for i in tracks)
        assert kinds == ["cage", "cage", "histone-long"], signal
        assert all(metadata["tracks"][i]["signal"] == signal for i in tracks)
    assert long_range_signal_tracks(metadata["tracks"]) == by_signal
    assert metadata["settings"]["long_range_signals"] == ["band", "decay", "count"]
    with pytest.raises(UserError, match="long_range_signals"):
        make_synthetic(tmp_path / "bad", "tiny", long_range_signals=("band", "ring"))


def test_the_kernels_grade_distance_specificity_at_the_bands_total_weight():
    settings = SyntheticSettings(**LONG)
    kernels = _kernels(settings)
    near, far = (value // 128 for value in settings.long_range_bp)
    band, decay, count = kernels["ring"], kernels["ring/decay"], kernels["ring/count"]
    assert decay.sum() == pytest.approx(band.sum()) and count.sum() == pytest.approx(band.sum())
    span = len(count) // 2
    distance = np.abs(np.arange(-span, span + 1))
    # Nothing within the conv tower's reach for any signal: only attention links distal enhancers.
    for kernel in (decay, count):
        assert not kernel[distance < near].any()
    beyond = distance >= near
    assert np.ptp(count[beyond]) == 0  # distance-agnostic
    right = decay[span + near:]
    assert (np.diff(right) < 0).all() and right[0] / right[-1] == pytest.approx((span / near) ** 1.0)
    assert span >= far and len(band) == 2 * far + 1  # the band ends at far; the graded signals reach further


def test_moving_an_enhancer_changes_the_band_signal_but_not_the_count():
    """Promoters at the centre and one enhancer moved from inside the band to beyond it (both beyond the
    conv tower's reach): the band's CAGE signal drops to the baseline, the count's stays, the decay's falls."""
    settings = SyntheticSettings(**LONG)
    kernels = _kernels(settings)
    rng = np.random.default_rng(0)
    tracks = {t.signal: t for t in synthetic._tracks(settings, rng) if t.kind == "cage"}
    near, far = (value // 128 for value in settings.long_range_bp)
    bins, centre = 96, 48
    values = {}
    for label, enhancer in (("inside", centre + near + 1), ("beyond", centre + far + 4)):
        counts = np.zeros((synthetic.NUM_MOTIFS, bins))
        counts[list(synthetic.PROMOTERS), centre] = 1  # the tracks' promoter motifs differ
        counts[synthetic.ENHANCERS[0], enhancer] = 1
        values[label] = {signal: synthetic._expected_signal(track, counts, kernels, 0.05, "sharp")[centre]
                         for signal, track in tracks.items()}
    assert values["beyond"]["band"] == pytest.approx(0.05) and values["inside"]["band"] > 0.05
    assert values["beyond"]["count"] == pytest.approx(values["inside"]["count"])
    assert values["beyond"]["count"] > 0.05
    assert values["inside"]["decay"] > values["beyond"]["decay"] > 0.05


def test_the_named_sizes_keep_the_band_only():
    assert all(size.long_range_signals == ("band",) for size in SIZES.values())
