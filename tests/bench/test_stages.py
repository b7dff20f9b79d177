"""``senformer.bench.stages``: the stage-by-stage forward pass is the model's forward, its FLOPs add up to the
whole pass's and match the analytic counts, and ``senformer benchmark flops`` writes the report."""

import functools
import json

import pytest
import torch
from helpers import randomize_, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from senformer.bench import measure, stages
from senformer.cli import main
from senformer.config import BorzoiConfig
from senformer.model.attention import FullAttention
from senformer.model.borzoi import Borzoi
from senformer.sequence import tokens_to_one_hot

LENGTH = 1024  # tiny Enformer: 8 positions


def whole_pass_flops(model, x, head):
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x, heads=[head])
    return counter.get_total_flops()


@pytest.mark.parametrize("family", ["enformer", "borzoi"])
def test_the_stages_are_the_forward_pass_and_their_flops_add_up(family):
    if family == "enformer":
        model, length, head = tiny_model(seed=1, depth=1), LENGTH, "human"
    else:
        torch.manual_seed(2)
        config = BorzoiConfig(dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5,
                              num_conv_tower_blocks=3, conv_tower_start=8, conv_tower_divisible_by=4, crop=2,
                              final_channels=12, output_heads={"human": 3}, positional_basis_length=64)
        model, length, head = randomize_(Borzoi(config)).eval(), 2048, "human"
    x = tokens_to_one_hot(torch.randint(0, 4, (1, length), generator=torch.Generator().manual_seed(3)))
    with torch.inference_mode():
        expected = model(x, heads=[head])[head]
        staged = stages.forward_stages(model, x, lambda name, fn: fn(), head)
    torch.testing.assert_close(staged, expected, rtol=0, atol=0)
    flops = stages.stage_flops(model, x, head)
    names = ["stem", "conv tower", "layer 0 projections", "layer 0 relative term", "layer 0 attention core",
             "layer 0 mlp", *(["u-net"] if family == "borzoi" else []), "heads"]
    assert list(flops) == names
    assert sum(flops.values()) == whole_pass_flops(model, x, head)
    positions = length // 2**model.config.num_poolings  # the transformer's positions
    config = model.config
    assert flops["layer 0 projections"] == FullAttention.projection_flops(config, positions)
    if family == "enformer":  # the per-distance term: one product per query and distance
        relative = 2 * config.heads * positions * (2 * positions - 1) * config.key_size
        assert flops["layer 0 relative term"] == relative
        assert flops["layer 0 attention core"] + relative == FullAttention.score_flops(config, positions)


def test_benchmark_flops_writes_the_report_with_the_sgemm_rate_flags_and_load(tmp_path, monkeypatch):
    monkeypatch.setattr(measure, "measure_matmul_rate",
                        functools.partial(measure.measure_matmul_rate, size=64, min_seconds=0.01))
    out = tmp_path / "flops"
    settings = ["--set", "dim=48", "--set", "depth=1", "--set", "heads=2", "--set", "key_size=8",
                "--set", "conv_tower_divisible_by=8", "--set", "target_length=8", "--set", 'output_heads={"human": 3}']
    assert main(["benchmark", "flops", "--length", "1024", "--repeats", "1", "--threads", "1", *settings,
                 "--out", str(out)]) == 0
    report = json.loads((out / "flops.json").read_text())
    assert report["sgemm_gflops"] > 0 and len(report["sgemm"]) == 2
    assert isinstance(report["cpu_flags"], list) and len(report["load_average_before"]) == 3
    by_name = {stage["stage"]: stage for stage in report["stages"]}
    assert by_name["layer 0 projections"]["gflop"] > 0 and by_name["stem"]["median_s"] > 0
    assert abs(sum(stage["share_of_time"] for stage in report["stages"]) - 1) < 1e-9
    assert "| layer 0 attention core |" in (out / "flops.md").read_text()
    with pytest.raises(SystemExit):
        main(["benchmark", "flops", "--preset", "nonsense", "--out", str(tmp_path / "x")])
