"""Borzoi's shipped track tables and the undo of the squashed scale, against calico's own rules."""

import numpy as np
import pandas as pd
import pytest

from senformer.data.borzoi_targets import (
    BORZOI_TARGET_COLUMNS, apply_squashed_scale, borzoi_track_table, read_borzoi_targets, undo_squashed_scale,
)
from senformer.errors import UserError


def calico_untransform(preds: np.ndarray, targets_df: pd.DataFrame, unscale=False, unclip=True) -> np.ndarray:
    """baskerville ``dataset.untransform_preds1`` (calico/baskerville 544073b), transcribed."""
    scale = np.expand_dims(np.array(targets_df.scale), axis=0)
    preds = preds / scale
    if unclip:
        cs = np.expand_dims(np.array(targets_df.clip_soft), axis=0)
        preds_unclip = cs + (preds - cs) ** 2
        preds = np.where(preds > cs, preds_unclip, preds)
    sqrt_mask = np.array([ss.find("_sqrt") != -1 for ss in targets_df.sum_stat])
    preds[:, sqrt_mask] = (preds[:, sqrt_mask]) ** (4 / 3)
    if not unscale:
        preds = preds * scale
    return preds


def calico_transform(coverage: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """The published models' targets (hound_data_read, the old transform) from per-bin coverage: ``*_sqrt``
    to the power 3/4, soft clip above ``clip_soft`` (c + sqrt(x - c)), times ``scale``; no hard clip."""
    squashed = coverage.copy()
    for track, row in enumerate(table.itertuples()):
        values = squashed[:, track]
        if row.sum_stat.endswith("_sqrt"):
            values = values**0.75
        above = values > row.clip_soft
        values[above] = row.clip_soft + np.sqrt(values[above] - row.clip_soft)
        squashed[:, track] = row.scale * values
    return squashed


def every_kind_table() -> pd.DataFrame:
    kinds = ["sum", "mean", "sum_sqrt", "mean_sqrt", "sum", "sum_sqrt"]
    return pd.DataFrame({
        "index": range(6), "identifier": [f"t{i}" for i in range(6)], "clip": [768.0] * 6,
        "clip_soft": [384.0, 32.0, 384.0, 64.0, 5.0, 10.0], "scale": [1.0, 2.0, 0.3, 0.01, 0.5, 1.0],
        "sum_stat": kinds, "strand_pair": range(6), "description": ["RNA:x"] * 6,
    })


def test_undo_equals_calico_on_every_sum_stat_kind():
    table = every_kind_table()
    rng = np.random.default_rng(0)
    predictions = rng.gamma(1.0, 60.0, size=(50, 6))  # straddles every clip_soft
    for unscale in (False, True):
        for unclip in (False, True):
            expected = calico_untransform(predictions.copy(), table, unscale=unscale, unclip=unclip)
            got = undo_squashed_scale(predictions, table, unscale=unscale, unclip=unclip)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    # (..., tracks): any leading axes.
    stacked = undo_squashed_scale(predictions.reshape(5, 10, 6), table)
    np.testing.assert_allclose(stacked.reshape(50, 6), calico_untransform(predictions.copy(), table))


def test_undo_inverts_the_training_transform():
    table = every_kind_table()
    coverage = np.random.default_rng(1).gamma(0.5, 400.0, size=(40, 6))
    squashed = calico_transform(coverage, table)
    np.testing.assert_allclose(undo_squashed_scale(squashed, table, unscale=True), coverage, rtol=1e-9)
    np.testing.assert_allclose(undo_squashed_scale(squashed, table), coverage * table["scale"].to_numpy(), rtol=1e-9)


def test_shipped_tables_are_calicos(shared_dir):
    for head, count in (("human", 7611), ("mouse", 2608)):
        shipped = borzoi_track_table(head)
        assert len(shipped) == count and list(shipped["index"]) == list(range(count))
        original = read_borzoi_targets(shared_dir / "data" / "borzoi" / f"targets_{head}.txt")
        pd.testing.assert_frame_equal(shipped[list(BORZOI_TARGET_COLUMNS)], original[list(BORZOI_TARGET_COLUMNS)])


def test_shipped_table_strands():
    table = borzoi_track_table("human")
    assert set(table["sum_stat"]) == {"sum", "mean", "sum_sqrt"}
    pairs = table["strand_pair"].to_numpy()
    assert (pairs[pairs] == np.arange(len(table))).all()  # a pair's pair is the track itself
    stranded = table[pairs != np.arange(len(table))]
    assert stranded["identifier"].str[-1].isin(["+", "-"]).all()
    with pytest.raises(UserError, match="no shipped Borzoi track table for head 'rat'"):
        borzoi_track_table("rat")


def test_bad_tables_and_sizes(tmp_path):
    path = tmp_path / "targets.txt"
    path.write_text("\tidentifier\tclip\tclip_soft\tscale\tsum_stat\tstrand_pair\tdescription\n"
                    "0\ta+\t768\t384\tx\tsum\t1\tRNA:a\n1\ta-\t768\t384\t1.0\tsum\t0\tRNA:a\n")
    with pytest.raises(UserError, match="row 0 has scale='x'"):
        read_borzoi_targets(path)
    path.write_text("\tidentifier\tclip\tdescription\n0\ta\t768\tRNA:a\n")
    with pytest.raises(UserError, match="needs column.*clip_soft"):
        read_borzoi_targets(path)
    with pytest.raises(UserError, match="5 tracks cannot use a track table of 6 rows"):
        undo_squashed_scale(np.ones((2, 5)), every_kind_table())


def calico_read_old(seq_cov_nt: np.ndarray, pool_width: int, sum_stat: str, clip: float, clip_soft: float,
                    scale: float) -> np.ndarray:
    """baskerville ``hound_data_read.py --transform_old`` (calico/baskerville 544073b) for one track and
    window, transcribed: sum pool, power 0.75 for *_sqrt, soft clip, clip, scale."""
    target_length = len(seq_cov_nt) // pool_width
    seq_cov = seq_cov_nt.reshape(target_length, pool_width)
    if sum_stat == "sum":
        seq_cov = seq_cov.sum(axis=1, dtype="float32")
    elif sum_stat == "sum_sqrt":
        seq_cov = seq_cov.sum(axis=1, dtype="float32")
        seq_cov = seq_cov**0.75
    elif sum_stat in ["mean", "avg"]:
        seq_cov = seq_cov.mean(axis=1, dtype="float32")
    elif sum_stat in ["mean_sqrt", "avg_sqrt"]:
        seq_cov = seq_cov.mean(axis=1, dtype="float32")
        seq_cov = seq_cov**0.75
    clip_mask = seq_cov > clip_soft
    seq_cov[clip_mask] = clip_soft + np.sqrt(seq_cov[clip_mask] - clip_soft)
    seq_cov = np.clip(seq_cov, -clip, clip)
    return scale * seq_cov


def test_squashing_is_calicos_old_transform_and_undone_exactly():
    table = every_kind_table()
    table.loc[4, "clip"] = 6.0  # a hard clip reached after the soft one (5 + sqrt(excess) > 6)
    rng = np.random.default_rng(3)
    coverage = rng.gamma(0.5, 40.0, size=(2, 64, 6)) * (rng.random((2, 64, 6)) > 0.2)
    squashed = apply_squashed_scale(coverage, table, pool_width=8)
    assert squashed.shape == (2, 8, 6)
    for window in range(2):
        for track, row in enumerate(table.itertuples()):
            expected = calico_read_old(coverage[window, :, track].astype(np.float32), 8, row.sum_stat, row.clip,
                                       row.clip_soft, row.scale)
            np.testing.assert_allclose(squashed[window, :, track], expected, rtol=1e-5)
    assert squashed[..., 4].max() == pytest.approx(6.0 * 0.5)  # clipped, then scaled
    # Below the hard clip the training transform and calico's undo are inverses.
    pooled = apply_squashed_scale(coverage, table.assign(clip_soft=1e9, scale=1.0, sum_stat="sum"), pool_width=8)
    untouched = table.drop(index=4).index
    undone = undo_squashed_scale(squashed, table, unscale=True)
    means = np.where(table["sum_stat"].str.startswith("mean").to_numpy(), 1 / 8, 1.0)
    np.testing.assert_allclose(undone[..., untouched], (pooled * means)[..., untouched], rtol=1e-5)


def test_squashing_refuses_what_calico_cannot_squash():
    table = every_kind_table()
    with pytest.raises(UserError, match="6 rows"):
        apply_squashed_scale(np.ones((10, 5)), table)
    with pytest.raises(UserError, match="bins of 3 bp"):
        apply_squashed_scale(np.ones((10, 6)), table, pool_width=3)
    with pytest.raises(UserError, match="NaN"):
        apply_squashed_scale(np.full((10, 6), np.nan), table)
    with pytest.raises(UserError, match="negative"):
        apply_squashed_scale(-np.ones((10, 6)), table)
    with pytest.raises(UserError, match="sum_stat peak"):
        apply_squashed_scale(np.ones((10, 6)), table.assign(sum_stat="peak"))


def test_a_published_borzoi_head_gets_the_shipped_table_and_its_strand_pairs():
    from senformer.data.tracks import head_track_table, select_tracks, shipped_strand_pairs, strand_pairs

    for head, count in (("human", 7611), ("mouse", 2608)):
        table = head_track_table(head, count)
        shipped = borzoi_track_table(head)
        assert table.attrs["source"] == "shipped" and list(table["identifier"]) == list(shipped["identifier"])
        assert np.array_equal(shipped_strand_pairs(head, count), shipped["strand_pair"].to_numpy())
    table = head_track_table("human", 7611)
    plus = select_tracks(r"\+$", table)
    assert len(plus) and (table["identifier"].iloc[strand_pairs(table)[plus]].str[-1] == "-").all()
    assert shipped_strand_pairs("human", 5313) is None  # Enformer's tracks are unstranded
    broken = every_kind_table().assign(strand_pair=[1, 2, 0, 3, 4, 5])
    with pytest.raises(UserError, match="pairs with row 1, which does not pair back"):
        strand_pairs(broken)
