"""The edit engine equals whole-window predictions of every edited window (issue 13's bounds).

Tiny float64 models with every weight and BatchNorm statistic randomised (attention output layer included)
and a conv tile shorter than the input, so the reference trunk itself is tiled. Equality means
max |engine - plain| <= 1e-10 max |plain| over all outputs.
"""

from __future__ import annotations

import pytest
import torch

from helpers import random_tokens, tiny_model
from senformer.edits import Edit, EditEngine, changed_span, edit_flops
from senformer.config import EnformerConfig
from senformer.inference import predict_batch
from senformer.model.tiling import halo_bins

BIN = 128
LENGTH = 32 * BIN  # 32 trunk positions; 8 bigbird blocks of 4, so bigbird runs sparse with 1 random block
TILE = 10 * BIN  # 4 kept positions per tile: tile boundaries at 512, 1024, ... bp
BOUND = 1e-10


def exact_model(attention: str = "full", seed: int = 0, **overrides):
    settings = {"attention": attention, "num_random_blocks": 1, "conv_tile_length": TILE, **overrides}
    return tiny_model(seed, **settings).double()


def mixed_edits(tokens: torch.Tensor) -> list[Edit]:
    """SNVs at the first and last base, beside a tile boundary, two within reach of each other; an MNV
    across a bin boundary; insertions and deletions refilled on either side."""
    def ref(position: int, size: int = 1) -> str:
        return "".join("ACGTN"[int(token)] for token in tokens[position : position + size])

    def other(base: str) -> str:
        return "C" if base != "C" else "G"

    edits = [Edit(position, ref(position), other(ref(position)))
             for position in (0, LENGTH - 1, 4 * BIN - 1, 4 * BIN, 2000, 2003)]
    edits += [
        Edit(3 * BIN - 2, ref(3 * BIN - 2, 4), "ACGT"),  # MNV across a bin boundary
        Edit(1500, ref(1500), ref(1500) + "GATTACA"),  # insertion, right flank refilled
        Edit(2600, ref(2600, 5), ref(2600)),  # deletion of 4 bp, right flank refilled
        Edit(2600, ref(2600, 5), ref(2600), refill="left"),  # the same, anchored on the right
        Edit(900, ref(900), ref(900) + "TT", refill="left"),
        Edit(LENGTH - 2, ref(LENGTH - 2, 2), ""),  # deletion of the last two bases
    ]
    return edits


def relative_error(engine: dict, plain: dict) -> float:
    return max(float((engine[name] - plain[name]).abs().max() / plain[name].abs().max()) for name in plain)


def both_paths(model, tokens, edits, flank=16, **options):
    """(engine, plain) outputs of every edit and of the reference."""
    margin = options.get("margin", 0)
    extended = random_tokens(1, LENGTH + 2 * margin + 2 * flank, seed=11)[0]
    extended[flank : flank + LENGTH + 2 * margin] = tokens
    results = []
    for plain in (False, True):
        engine = EditEngine(model, tokens, left_flank=extended[:flank], right_flank=extended[-flank:],
                            plain=plain, **options)
        results.append((engine.score_all(edits), engine.reference_output()))
    return results


@pytest.mark.parametrize("attention", ["full", "chunked", "bigbird"])
def test_engine_equals_plain_for_every_kind_of_edit(attention):
    model = exact_model(attention, seed=1)
    tokens = random_tokens(1, LENGTH, seed=2)[0]
    edits = mixed_edits(tokens)
    (engine, engine_reference), (plain, plain_reference) = both_paths(
        model, tokens, edits, accumulate=torch.float64, batch_size=5)
    assert set(engine) == {"human", "mouse"} and engine["human"].shape == (len(edits), 8, 5)
    assert relative_error(engine, plain) <= BOUND
    assert relative_error(engine_reference, plain_reference) <= BOUND
    for name in plain:  # every edit moves the output: the comparison is not between identical references
        changes = (plain[name] - plain_reference[name]).abs().amax(dim=(1, 2))
        assert (changes > 1e-6 * plain[name].abs().max()).all()


def test_plain_path_is_predict_batch_of_the_edited_window():
    model = exact_model(seed=3)
    tokens = random_tokens(1, LENGTH, seed=4)[0]
    edit = Edit(1500, "ACGTN"[int(tokens[1500])] + "ACGTN"[int(tokens[1501])], "T")
    engine = EditEngine(model, tokens, right_flank=random_tokens(1, 8, seed=5)[0], plain=True,
                        accumulate=torch.float64)
    edited = torch.cat([tokens[:1500], torch.tensor([3]), tokens[1502:], random_tokens(1, 8, seed=5)[0][:1]])
    expected = predict_batch(model, edited[None], accumulate=torch.float64)
    outputs = engine.score_all([edit])
    for name in expected:
        torch.testing.assert_close(outputs[name], expected[name], rtol=0, atol=0)


@pytest.mark.parametrize("attention", ["full", "bigbird"])
def test_reverse_complement_and_shifts(attention):
    model = exact_model(attention, seed=5)
    margin = 3
    tokens = random_tokens(1, LENGTH + 2 * margin, seed=6)[0]
    edits = [Edit(position - margin, "ACGTN"[int(tokens[position])], "A" if int(tokens[position]) else "G")
             for position in (0, 1, 2, margin + 700, margin + LENGTH - 1, margin + LENGTH + 2)]  # margins too
    edits.append(Edit(1200, "ACGTN"[int(tokens[margin + 1200])], "ACG"))
    edits.append(Edit(1200, "ACGTN"[int(tokens[margin + 1200])], "ACG", refill="left"))
    (engine, engine_reference), (plain, plain_reference) = both_paths(
        model, tokens, edits, reverse_complement=True, shifts=(-3, 0, 2), margin=margin,
        accumulate=torch.float64, batch_size=3)
    assert relative_error(engine, plain) <= BOUND
    assert relative_error(engine_reference, plain_reference) <= BOUND


def test_tracks_and_heads_select_columns_as_predict_batch():
    model = exact_model(seed=7)
    tokens = random_tokens(1, LENGTH, seed=8)[0]
    edits = mixed_edits(tokens)[:4]
    (engine, _), (plain, _) = both_paths(model, tokens, edits, heads=["mouse"], tracks={"mouse": [2, 0]},
                                         accumulate=torch.float64)
    assert set(engine) == {"mouse"} and engine["mouse"].shape == (4, 8, 2)
    assert relative_error(engine, plain) <= BOUND


def test_engine_recomputes_only_the_positions_an_snv_can_reach():
    model = exact_model(seed=9, conv_tile_length=16 * BIN)  # the reference (32 positions) is tiled, spans not
    tokens = random_tokens(1, LENGTH, seed=10)[0]
    engine = EditEngine(model, tokens, accumulate=torch.float64)
    engine.reference_output()
    lengths = []
    hook = model.stem.register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[-1]))
    engine.score_all([Edit(2000, "ACGTN"[int(tokens[2000])], "A"), Edit(0, "ACGTN"[int(tokens[0])], "A")])
    hook.remove()
    # Reach 259 bp left, 386 bp right, halo 3. bp 2000 reaches positions 13..17 (ceil((2000 - 386) / 128) to
    # (2000 + 259) // 128), run in a window of positions 10..20; bp 0 reaches 0..2, window 0..5.
    assert halo_bins(model) == 3
    assert sorted(lengths) == [6 * BIN, 11 * BIN]


def test_float32_statistic():
    """float32: on this randomised tiny model (outputs up to ~300) the statistic is 6e-6 to 4e-5 over seeds and
    thread counts, the size of the plain float32 path's own distance from float64 (3e-6 to 4e-5): oneDNN's
    float32 convolutions round some positions differently in a short span than in the whole window, and the
    transformer carries that on. Neither path is further from the float64 truth than a few times the other."""
    model = tiny_model(1, num_random_blocks=1, conv_tile_length=TILE)
    tokens = random_tokens(1, LENGTH, seed=2)[0]
    edits = mixed_edits(tokens)
    (engine, _), (plain, _) = both_paths(model, tokens, edits, accumulate=torch.float64)
    (_, _), (exact, _) = both_paths(model.double(), tokens, edits, accumulate=torch.float64)
    error, own, engine_own = relative_error(engine, plain), relative_error(plain, exact), relative_error(engine, exact)
    assert 0 < error < 1e-4 and own < 1e-4, (error, own)
    assert engine_own <= 5 * own and own <= 5 * engine_own, (engine_own, own)


def test_bf16_engine_is_no_further_from_plain_bf16_than_plain_bf16_from_fp32(monkeypatch):
    # bf16 even where the CPU only emulates it (slow, but the same arithmetic): the tiny model is cheap
    monkeypatch.setattr("senformer.inference.use_bf16", lambda requested, device: requested)
    model = tiny_model(2, num_random_blocks=1, conv_tile_length=TILE)
    tokens = random_tokens(1, LENGTH, seed=3)[0]
    edits = mixed_edits(tokens)[:6]
    (engine, _), (plain, _) = both_paths(model, tokens, edits, bf16=True)
    (_, _), (fp32, _) = both_paths(model, tokens, edits)
    assert relative_error(engine, plain) <= relative_error(plain, fp32)
    assert relative_error(plain, fp32) > 0  # bf16 really ran


def test_training_mode_and_bad_edits_are_refused():
    model = exact_model(seed=0)
    tokens = random_tokens(1, LENGTH, seed=1)[0]
    with pytest.raises(ValueError, match="evaluation mode"):
        EditEngine(model.train(), tokens)
    model.eval()
    engine = EditEngine(model, tokens, right_flank=tokens[:2])
    base = "ACGTN"[int(tokens[10])]
    wrong = "A" if base != "A" else "C"
    with pytest.raises(ValueError, match=f"the reference has '{base}' there, not '{wrong}'"):
        engine.score_all([Edit(10, wrong, "T")])
    with pytest.raises(ValueError, match="deletes 5 bp: the window needs 5 bp of right_flank, got 2"):
        engine.score_all([Edit(10, "".join("ACGTN"[int(token)] for token in tokens[10:15]), "")])
    with pytest.raises(ValueError, match="deletes 2 bp: the window needs 2 bp of left_flank, got 0"):
        engine.validate(Edit(10, "".join("ACGTN"[int(token)] for token in tokens[10:13]), base, refill="left"))
    engine.validate(Edit(10, base, base + "ACGT", refill="left"))  # an insertion needs no flank
    with pytest.raises(ValueError, match="outside the input"):
        engine.score_all([Edit(LENGTH, "A", "C")])
    with pytest.raises(ValueError, match="refill"):
        Edit(0, "A", "C", refill="up")
    engine = EditEngine(model, tokens)
    model.train()
    with pytest.raises(ValueError, match="evaluation mode"):  # also when switched after construction
        engine.score_all([Edit(10, base, "T" if base != "T" else "A")])


def test_changed_span_of_each_edit_kind():
    assert changed_span(Edit(10, "A", "C"), 2, 100) == (12, 13)
    assert changed_span(Edit(10, "AC", "GT"), 0, 100) == (10, 12)
    assert changed_span(Edit(10, "A", "ACC"), 0, 100) == (10, 100)
    assert changed_span(Edit(10, "ACC", "A", refill="left"), 0, 100) == (0, 13)


def test_edit_flops_at_the_published_geometry():
    config = EnformerConfig()
    snv = edit_flops(config, 196_608)
    assert 3.2e12 < snv["whole"] < 3.4e12 and 2.5e12 < snv["conv_trunk"] < 2.6e12
    assert snv["recomputed_positions"] <= 12  # 6 stale positions at most, 3 halo positions on each side
    assert 4.2 < snv["bound"] < 4.4  # the bound for SNVs and ISM
    centred = edit_flops(config, 196_608, Edit(98_304, "A", "AT"), reverse_complement=True)
    assert 1.55 < centred["bound"] < 1.7  # variant-centred indel with RC averaging


# Borzoi: the tower and both U-Net skips patched as one packed tensor -------------------------------------------
def tiny_borzoi(seed: int):
    """Borzoi's geometry (6 pooling tower blocks, 2 U-Net levels: 32-bp bins) at tiny widths, float64, with a
    conv tile shorter than the input so the reference trunk is tiled too."""
    from helpers import randomize_
    from senformer.config import BorzoiConfig
    from senformer.model.borzoi import Borzoi

    config = BorzoiConfig(dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5,
                          conv_tower_start=8, conv_tower_divisible_by=4, crop=2, final_channels=12,
                          output_heads={"human": 4}, dropout_rate=0.0, attention_dropout_rate=0.0,
                          positional_dropout_rate=0.0, final_dropout_rate=0.0, conv_tile_length=TILE)
    torch.manual_seed(seed)
    return randomize_(Borzoi(config), seed).double().eval()


@pytest.fixture(scope="module")
def borzoi():
    return tiny_borzoi(3)


def test_borzoi_engine_equals_plain_for_every_kind_of_edit(borzoi):
    tokens = random_tokens(1, LENGTH, seed=12)[0]
    edits = [mixed_edits(tokens)[index] for index in (0, 4, 6, 7, 8, 9, 11)]  # SNVs, an MNV, indels both sides
    pairs = {"human": [1, 0, 2, 3]}  # a stranded pair swapped under the reverse complement
    (engine, engine_reference), (plain, plain_reference) = both_paths(
        borzoi, tokens, edits, reverse_complement=True, strand_pairs=pairs, accumulate=torch.float64, batch_size=5)
    assert engine["human"].shape == (len(edits), LENGTH // 32 - 4, 4)
    assert relative_error(engine, plain) <= BOUND
    assert relative_error(engine_reference, plain_reference) <= BOUND
    changes = (plain["human"] - plain_reference["human"]).abs().amax(dim=(1, 2))
    assert (changes > 1e-6 * plain["human"].abs().max()).all()
    # float32: within the plain float32 path's own distance from float64
    model32 = tiny_borzoi(3).float()
    (engine32, _), (plain32, _) = both_paths(model32, tokens, edits[:4], accumulate=torch.float64)
    (_, _), (exact, _) = both_paths(borzoi, tokens, edits[:4], accumulate=torch.float64)
    own, engine_own = relative_error(plain32, exact), relative_error(engine32, exact)
    assert 0 < relative_error(engine32, plain32) < 1e-4 and own < 1e-4
    assert engine_own <= 5 * own, (engine_own, own)


def test_borzoi_engine_recomputes_only_what_an_snv_reaches(borzoi):
    tokens = random_tokens(1, LENGTH, seed=13)[0]
    engine = EditEngine(borzoi, tokens, accumulate=torch.float64)
    engine.reference_output()
    lengths = []
    hook = borzoi.stem.register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[-1]))
    engine.score_all([Edit(2000, "ACGTN"[int(tokens[2000])], "A")])
    hook.remove()
    # Reach 254 bp left, 381 bp right (width-5 convs at 1, 2, ..., 64 bp), halo 2: bp 2000 reaches positions
    # 13..17, run in a window of positions 11..20; the skips come with them, no more input.
    assert halo_bins(borzoi) == 2
    assert lengths == [9 * BIN]


def test_edit_flops_of_borzoi_at_the_published_geometry():
    from senformer.config import BorzoiConfig

    snv = edit_flops(BorzoiConfig(), 524_288)
    assert 4.9e12 < snv["whole"] < 5.1e12 and 2.5e12 < snv["conv_trunk"] < 2.6e12  # half of it the tower
    assert snv["recomputed_positions"] <= 12 and 2.0 < snv["bound"] < 2.1  # the transformer and U-Net stay
