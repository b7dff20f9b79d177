"""``senformer.predict``: regions and sequences -> HDF5 (and bigWig), checked against the model by hand."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import strand_passes, tiny_model

from senformer.data.genome import Genome, Interval
from senformer.errors import UserError
from senformer.data.tracks import select_tracks
from senformer.predict import PredictOptions, predict
from senformer.windows import Geometry, plan_region
from senformer.sequence import one_hot, reverse_complement

LENGTH = 1024  # tiny model: 8 positions of 128 bp, all kept (target_length 8)
CHROM_SIZE = 6_000


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture
def fasta(tmp_path):
    rng = np.random.default_rng(0)
    sequences = {"chrA": "".join(rng.choice(list("ACGT"), CHROM_SIZE)), "chrB": "".join(rng.choice(list("ACGTN"), 3_000))}
    path = tmp_path / "genome.fa"
    with open(path, "w") as handle:
        for name, sequence in sequences.items():
            handle.write(f">{name}\n")
            handle.writelines(sequence[i : i + 70] + "\n" for i in range(0, len(sequence), 70))
    return path


def by_hand(model, genome: Genome, window: Interval, rc: bool = False) -> np.ndarray:
    x = one_hot(genome.fetch(window))[None]
    with torch.no_grad():
        forward = model(x)["human"][0]
        if not rc:
            return forward.numpy()
        backward = model(reverse_complement(x))["human"][0].flip(0)
    return ((forward + backward) / 2).numpy()


def read(path, head="human"):
    with h5py.File(path) as handle:
        return handle[f"{head}/predictions"][:].astype(np.float32)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-3)  # float16 storage


def test_region_prediction_equals_the_model_on_the_one_hot_window(model, fasta, tmp_path):
    region = Interval("chrA", 2_000, 2_100)
    out = predict(model, tmp_path / "out.h5", genome=fasta, regions=[region],
                  options=PredictOptions(sequence_length=LENGTH), progress=False)
    window = region.resize(LENGTH)  # the output covers the whole input for this tiny model
    close(read(out)[0], by_hand(model, Genome(fasta), window))
    with h5py.File(out) as handle:
        assert handle["regions/bins_start"][0] == window.start
        assert handle["regions/num_bins"][0] == 8
        assert handle["regions/chrom"][0].decode() == "chrA" and handle["regions/name"][0].decode() == "chrA:2000-2100"
        assert handle["human/predictions"].dtype == np.float16 and handle["human/predictions"].shape == (1, 8, 5)
        assert list(handle["human/tracks/index"][:]) == [0, 1, 2, 3, 4]
        assert handle.attrs["completed"] == 1 and "reverse_complement" in handle.attrs["settings"]
    assert not (tmp_path / "out.h5.partial").exists()


def test_reverse_complement_averaging_is_the_mean_of_both_passes(model, fasta, tmp_path):
    region = Interval("chrA", 3_000, 3_500)
    out = predict(model, tmp_path / "rc.h5", genome=fasta, regions=[region],
                  options=PredictOptions(sequence_length=LENGTH, reverse_complement=True), progress=False)
    expected = by_hand(model, Genome(fasta), region.resize(LENGTH), rc=True)
    close(read(out)[0], expected)
    assert not np.allclose(expected, by_hand(model, Genome(fasta), region.resize(LENGTH)), rtol=1e-3)


def test_shift_averaging_is_the_mean_over_shifted_windows(model, fasta, tmp_path):
    region = Interval("chrA", 1_000, 1_200)
    out = predict(model, tmp_path / "shift.h5", genome=fasta, regions=[region],
                  options=PredictOptions(sequence_length=LENGTH, shifts=(-3, 0, 2)), progress=False)
    genome, window = Genome(fasta), region.resize(LENGTH)
    expected = np.mean([by_hand(model, genome, Interval("chrA", window.start + s, window.end + s)) for s in (-3, 0, 2)], axis=0)
    close(read(out)[0], expected)


def test_averaged_prediction_is_exactly_the_model_passes_summed_in_order(model, fasta, tmp_path):
    """RC and shift averaging add the passes (shift by shift, forward then reverse) and divide once: the
    stored values are exactly that float32 mean rounded to float16."""
    region, shifts = Interval("chrA", 2_000, 2_100), (-2, 0, 1)
    out = predict(model, tmp_path / "exact.h5", genome=fasta, regions=[region], progress=False,
                  options=PredictOptions(sequence_length=LENGTH, reverse_complement=True, shifts=shifts, embeddings=True))
    genome, window = Genome(fasta), region.resize(LENGTH)
    sums = {}
    with torch.no_grad():
        for shift in shifts:
            x = one_hot(genome.fetch(Interval("chrA", window.start + shift, window.end + shift)))[None]
            for flip, outputs in zip((False, True), strand_passes(model, x, return_embeddings=True)):
                for name, value in outputs.items():
                    value = value[0].flip(0) if flip else value[0]
                    sums[name] = sums[name] + value if name in sums else value
    with h5py.File(out) as handle:
        for name in ("human", "mouse"):
            np.testing.assert_array_equal(handle[f"{name}/predictions"][0], (sums[name] / 6).numpy().astype(np.float16))
        np.testing.assert_array_equal(handle["embeddings"][0], (sums["embeddings"] / 6).numpy().astype(np.float16))


def test_windows_beyond_the_chromosome_ends_are_padded_with_n(model, fasta, tmp_path):
    regions = [Interval("chrA", 0, 100), Interval("chrA", CHROM_SIZE - 50, CHROM_SIZE)]
    out = predict(model, tmp_path / "ends.h5", genome=fasta, regions=regions,
                  options=PredictOptions(sequence_length=LENGTH), progress=False)
    genome = Genome(fasta)
    sequence = genome.fetch(Interval("chrA", 0, CHROM_SIZE))
    left = "N" * 462 + sequence[:562]  # window [-462, 562)
    right = sequence[CHROM_SIZE - 537 :] + "N" * 487  # window [5463, 6487)
    for row, text in enumerate((left, right)):
        assert len(text) == LENGTH
        with torch.no_grad():
            expected = model(one_hot(text)[None])["human"][0].numpy()
        close(read(out)[row], expected)


def test_long_regions_are_tiled_and_stitched(model, fasta, tmp_path):
    region = Interval("chrA", 500, 4_000)  # 3,500 bp = 28 bins > 8-bin output window
    geometry = Geometry.of(model.config, LENGTH)
    plan = plan_region(region, geometry)
    assert plan.num_bins == 28 and plan.tile_offsets == (0, 4, 8, 12, 16, 20)
    out = predict(model, tmp_path / "long.h5", genome=fasta, regions=[region],
                  options=PredictOptions(sequence_length=LENGTH), progress=False)
    result = read(out)[0]
    genome = Genome(fasta)
    tiles = [by_hand(model, genome, plan.input_window(t, geometry)) for t in range(len(plan.tile_offsets))]
    # Each bin comes from the window in which it is most central.
    for b in range(plan.num_bins):
        tile = plan.bin_tile[b]
        centre_distance = abs(b + 0.5 - (plan.tile_offsets[tile] + 4))
        assert all(centre_distance <= abs(b + 0.5 - (offset + 4)) for offset in plan.tile_offsets)
        close(result[b], tiles[tile][b - plan.tile_offsets[tile]])
    with h5py.File(out) as handle:
        assert handle["regions/bins_start"][0] == plan.span_start == 500 + (3_500 - 28 * 128) // 2


def test_strings_of_a_prediction_file_read_back_as_str(model, fasta, tmp_path):
    from senformer.predictions import hdf5_strings, list_regions

    region = Interval("chrA", 2_000, 2_100, "peak-é")
    out = predict(model, tmp_path / "names.h5", genome=fasta, regions=[region], progress=False,
                  options=PredictOptions(sequence_length=LENGTH))
    with h5py.File(out) as handle:
        assert isinstance(handle["regions/chrom"][0], bytes)  # what h5py gives for utf-8 strings
        assert hdf5_strings(handle["regions/name"][:]) == ["peak-é"]
        identifiers = hdf5_strings(handle["human/tracks/identifier"][:])
    assert all(type(value) is str for value in identifiers)
    table = list_regions(out)
    assert list(table["chrom"]) == ["chrA"] and list(table["name"]) == ["peak-é"]


def test_progress_counts_input_windows_not_regions(model, fasta, tmp_path, capsys):
    regions = [Interval("chrA", 2_000, 2_100), Interval("chrA", 500, 4_000)]  # 1 window, then 6 (as above)
    predict(model, tmp_path / "progress.h5", genome=fasta, regions=regions, progress=True,
            options=PredictOptions(sequence_length=LENGTH, reverse_complement=True, batch_size=2))
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("predict (2 passes per window): 100%") and "7/7" in final, final


def test_mixed_lengths_pad_shorter_regions_with_nan(model, fasta, tmp_path):
    out = predict(model, tmp_path / "mixed.h5", genome=fasta, options=PredictOptions(sequence_length=LENGTH),
                  regions=[Interval("chrA", 100, 200), Interval("chrA", 500, 2_500)], progress=False)
    values = read(out)
    assert values.shape == (2, 16, 5)
    assert np.isnan(values[0, 8:]).all() and np.isfinite(values[0, :8]).all() and np.isfinite(values[1]).all()


def test_batching_heads_tracks_and_embeddings(model, fasta, tmp_path):
    regions = [Interval("chrA", 1_000 + 300 * i, 1_100 + 300 * i) for i in range(5)]
    single = predict(model, tmp_path / "single.h5", genome=fasta, regions=regions,
                     options=PredictOptions(sequence_length=LENGTH), progress=False)
    options = PredictOptions(sequence_length=LENGTH, batch_size=3, heads=("human",), tracks="1,3-4", embeddings=True)
    batched = predict(model, tmp_path / "batched.h5", genome=fasta, regions=regions, options=options, progress=False)
    close(read(batched), read(single)[..., [1, 3, 4]])
    with h5py.File(batched) as handle:
        assert "mouse" not in handle
        assert list(handle["human/tracks/index"][:]) == [1, 3, 4]
        assert handle["embeddings"].shape == (5, 8, 2 * model.config.dim)
        with torch.no_grad():
            expected = model(one_hot(Genome(fasta).fetch(regions[0].resize(LENGTH)))[None], return_embeddings=True)
        close(handle["embeddings"][0].astype(np.float32), expected["embeddings"][0].numpy())


def test_select_tracks_by_index_and_pattern():
    table = pd.DataFrame({"index": range(4), "identifier": ["ENCFF1", "ENCFF2", "CNhs1", "CNhs2"],
                          "description": ["DNASE:K562", "CHIP:H3K27ac:liver", "CAGE:K562", "CAGE:liver"]})
    assert select_tracks(None, table).tolist() == [0, 1, 2, 3]
    assert select_tracks("0, 2-3", table).tolist() == [0, 2, 3]
    assert select_tracks("cage.*k562", table).tolist() == [2]
    assert select_tracks("K562", table).tolist() == [0, 2]
    with pytest.raises(UserError, match="not within 0..3"):
        select_tracks("2-4", table)
    with pytest.raises(UserError, match="no track matches 'ATAC'"):  # predict's old grammar gave an empty selection
        select_tracks("ATAC", table)


def test_human_track_table_is_stored(fasta, tmp_path):
    model = tiny_model(seed=2, output_heads={"human": 5313})
    out = predict(model, tmp_path / "human.h5", genome=fasta, regions=[Interval("chrA", 100, 200)],
                  options=PredictOptions(sequence_length=LENGTH, tracks="^CAGE:.*K562"), progress=False)
    with h5py.File(out) as handle:
        descriptions = [d.decode() for d in handle["human/tracks/description"][:]]
        groups = {g.decode() for g in handle["human/tracks/assay_group"][:]}
        assert len(descriptions) == 2 and all(d.startswith("CAGE:") and "K562" in d for d in descriptions)
        assert groups == {"CAGE"} and list(handle["human/tracks/index"][:]) == [4828, 5111]
        assert handle["human/predictions"].shape[-1] == len(descriptions)


def test_sequences_given_directly_and_tfhub_input(model, tmp_path):
    rng = np.random.default_rng(3)
    long = "".join(rng.choice(list("ACGT"), 393_216))
    (tmp_path / "seqs.fa").write_text(">s1\n" + long + "\n")
    out = predict(model, tmp_path / "tfhub.h5", sequences=tmp_path / "seqs.fa",
                  options=PredictOptions(sequence_length=LENGTH, tfhub_input=True), progress=False)
    centre = long[(393_216 - LENGTH) // 2 :][:LENGTH]
    with torch.no_grad():
        expected = model(one_hot(centre)[None])["human"][0].numpy()
    close(read(out)[0], expected)
    with pytest.raises(UserError, match="expected 1,024.*--tfhub-input"):
        predict(model, tmp_path / "plain.h5", sequences=tmp_path / "seqs.fa",
                options=PredictOptions(sequence_length=LENGTH), progress=False)
    assert not (tmp_path / "plain.h5").exists() and not (tmp_path / "plain.h5.partial").exists()


class Interrupting(torch.nn.Module):
    """Wraps a model and raises KeyboardInterrupt on the ``fail_at``-th call."""

    def __init__(self, model, fail_at=None):
        super().__init__()
        self.model, self.fail_at, self.calls = model, fail_at, 0
        self.config = model.config

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.model(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)


def test_an_interrupted_run_resumes_where_it_stopped(model, fasta, tmp_path):
    regions = [Interval("chrA", 200 * i + 100, 200 * i + 150) for i in range(6)]
    options = PredictOptions(sequence_length=LENGTH, batch_size=2)
    out = tmp_path / "resume.h5"
    first = Interrupting(model, fail_at=3)  # batches 1-2 written (4 regions), the third interrupted
    with pytest.raises(KeyboardInterrupt):
        predict(first, out, genome=fasta, regions=regions, options=options, progress=False)
    assert not out.exists()
    with h5py.File(out.with_name("resume.h5.partial")) as handle:
        assert handle.attrs["completed"] == 4
    second = Interrupting(model)
    predict(second, out, genome=fasta, regions=regions, options=options, progress=False)
    assert second.calls == 1  # only the last batch of two regions was computed
    fresh = predict(model, tmp_path / "fresh.h5", genome=fasta, regions=regions, options=options, progress=False)
    np.testing.assert_array_equal(read(out), read(fresh))


def test_bad_regions_fail_before_writing_anything(model, fasta, tmp_path):
    out = tmp_path / "bad.h5"
    options = PredictOptions(sequence_length=LENGTH)
    cases = [
        ([Interval("chrZ", 0, 100)], "chromosome 'chrZ' is not in genome.fa"),
        ([Interval("chrA", 5_990, 6_010)], "runs off chrA, which is 6,000 bp long"),
        ([], "no regions to predict"),
    ]
    for regions, message in cases:
        with pytest.raises(UserError, match=message):
            predict(model, out, genome=fasta, regions=regions, options=options, progress=False)
    with pytest.raises(UserError, match="not valid"):
        predict(model, out, genome=fasta, regions=[Interval("chrA", 0, 10)], options=PredictOptions(sequence_length=1000))
    with pytest.raises(UserError, match="no track matches 'ATAC'"):
        predict(model, out, genome=fasta, regions=[Interval("chrA", 0, 10)],
                options=PredictOptions(sequence_length=LENGTH, tracks="ATAC"))
    with pytest.raises(UserError, match="unknown head"):
        predict(model, out, genome=fasta, regions=[Interval("chrA", 0, 10)],
                options=PredictOptions(sequence_length=LENGTH, heads=("pig",)))
    assert list(tmp_path.glob("bad*")) == []


def test_bigwig_tracks_average_overlapping_regions(model, fasta, tmp_path):
    pybigtools = pytest.importorskip("pybigtools")
    # Two regions whose spans are on the 128-bp grid and overlap by 4 bins.
    regions = [Interval("chrA", 1_024, 2_048), Interval("chrA", 1_536, 2_560)]
    options = PredictOptions(sequence_length=LENGTH, tracks="2")
    out = predict(model, tmp_path / "bw.h5", genome=fasta, regions=regions, options=options,
                  bigwig_dir=tmp_path / "tracks", progress=False)
    values = read(out)[:, :, 0]
    files = sorted(p.name for p in (tmp_path / "tracks").iterdir())
    assert files == ["human_2_human-2.bw", "mouse_2_mouse-2.bw", "run.json"]  # a folder under the output rule
    reader = pybigtools.open(str(tmp_path / "tracks" / "human_2_human-2.bw"))
    records = list(reader.records("chrA"))
    assert [(start, end) for start, end, _ in records] == [(1_024 + 128 * i, 1_152 + 128 * i) for i in range(12)]
    got = np.array([value for _, _, value in records])
    expected = np.concatenate([values[0, :4], (values[0, 4:] + values[1, :4]) / 2, values[1, 4:]])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_device_and_bf16(model, fasta, tmp_path, device):
    region = Interval("chrA", 2_500, 2_600)
    reference = by_hand(model, Genome(fasta), region.resize(LENGTH))
    out = predict(model, tmp_path / "device.h5", genome=fasta, regions=[region],
                  options=PredictOptions(sequence_length=LENGTH, device=str(device)), progress=False)
    np.testing.assert_allclose(read(out)[0], reference, rtol=2e-3, atol=2e-2)
    out = predict(model, tmp_path / "bf16.h5", genome=fasta, regions=[region],
                  options=PredictOptions(sequence_length=LENGTH, device=str(device), bf16=True), progress=False)
    bf16 = read(out)[0]
    assert np.isfinite(bf16).all()
    # bfloat16 keeps 8 bits of mantissa; this random model amplifies rounding, so compare the shape.
    assert np.corrcoef(bf16.ravel(), reference.ravel())[0, 1] > 0.98
    model.cpu()


def test_targets_file_names_the_tracks_of_the_head_it_fits(model, fasta, tmp_path):
    targets = tmp_path / "targets.txt"
    targets.write_text(
        "\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\n"
        "5313\t1\tENCFF1\tx\t32\t2\tmean\tDNASE:liver\n"
        "5314\t1\tENCFF2\tx\t32\t2\tmean\tCHIP:H3K4me3:liver\n"
        "5315\t1\tENCFF3\tx\t32\t2\tmean\tCHIP:CTCF:liver\n"
    )
    out = predict(model, tmp_path / "targets.h5", genome=fasta, regions=[Interval("chrA", 100, 200)],
                  options=PredictOptions(sequence_length=LENGTH, targets=str(targets), tracks="CHIP"), progress=False)
    with h5py.File(out) as handle:
        assert [g.decode() for g in handle["mouse/tracks/assay_group"][:]] == ["ChIP-Histone", "ChIP-TF"]
        assert list(handle["mouse/tracks/index"][:]) == [1, 2]
        assert "human" not in handle  # the pattern matches none of the numbered human tracks: head left out
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(targets.read_text().rsplit("\n", 2)[0] + "\n")
    with pytest.raises(UserError, match="as many rows as none of the heads"):
        predict(model, tmp_path / "wrong.h5", genome=fasta, regions=[Interval("chrA", 100, 200)],
                options=PredictOptions(sequence_length=LENGTH, targets=str(wrong)), progress=False)
