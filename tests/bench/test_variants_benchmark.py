"""``senformer benchmark variants`` end to end on a tiny model: files, the engine-vs-plain check, resuming,
bf16 skipped where not native. Timings are never asserted (benchmarks are scripts, not tests)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import pytest
import torch

from senformer.bench import variants
from senformer.bench.variant_measure import FP32_BOUND, equality_check, measure_point
from senformer.bench.variant_points import VariantPoint
from senformer.bench.variant_report import summarize
from senformer.cli import main
from senformer.edits import EditEngine

# 32 trunk positions, tiled conv trunk (2,048-bp tiles), 4 engine edits, 2 timed on the plain path.
TINY = ["benchmark", "variants", "--dim", "64", "--depth", "1", "--length", "4096", "--target-length", "8",
        "--edits", "4", "--plain-edits", "2", "--batch-size", "2", "--cluster-bp", "200",
        "--conv-tile-length", "2048", "--threads", "1", "--device", "cpu", "--attention", "full"]
TINY_POINT = dict(dim=64, depth=1, length=4096, target_length=8, edits=4, plain_edits=2, batch_size=2,
                  cluster_bp=200, conv_tile_length=2048, threads=1)


def _document(out):
    return json.loads((out / "variants.json").read_text())


def test_the_whole_command_writes_checked_results(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main([*TINY, "--precision", "fp32", "--out", str(out)]) == 0
    for name in ("variants.json", "variants.csv", "variants.md", "run.json", "settings.json"):
        assert (out / name).is_file(), name
    assert (out / "variants.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    document = _document(out)
    points = {record["workload"]: record for record in document["points"]}
    assert set(points) == {"anchored", "centred"}
    machine = document["runs"][-1]["machine"]
    assert machine["torch"] == torch.__version__ and "senformer_commit" in machine and "cpu" in machine
    for record in points.values():
        assert record["status"] == "ok", record.get("reason")
        check = record["check"]
        # The engine's outputs were compared with the plain path's before timing, on real differences.
        assert check["passed"] and check["relative"] <= FP32_BOUND and check["max_plain"] > 0
        assert len(check["edits"]) == 2
        assert record["plain_per_edit_seconds"] > 0 and record["engine_reference_seconds"] > 0
    assert set(points["anchored"]["workloads"]) == {"snv", "ism"}
    assert set(points["centred"]["workloads"]) == {"cluster", "centred-snv", "centred-indel"}
    reference_base, inserted = points["centred"]["check"]["edits"][0].split(":")[1].split(">")
    assert len(reference_base) == 1 and len(inserted) == 2  # the check covers the insertion's path
    assert points["anchored"]["workloads"]["ism"]["edits"] == 4

    rows = list(csv.DictReader((out / "variants.csv").open()))
    scenarios = {(row["scenario"], row["timing"], row["edits"]) for row in rows}
    assert ("anchored-snv", "steady state", "4") in scenarios
    assert {("anchored-ism", "amortised", str(n)) for n in (16, 64, 256)} <= scenarios
    assert {("cluster", "amortised", str(n)) for n in (2, 4, 8, 16)} <= scenarios
    assert ("centred-indel", "per variant", "1") in scenarios
    for row in rows:
        assert float(row["speedup"]) == pytest.approx(float(row["plain_seconds"]) / float(row["engine_seconds"]))
        assert float(row["flop_bound"]) > 1
        if row["timing"] in ("steady state", "per variant") and row["scenario"] != "centred-indel":
            # The floor is the transformer timed alone: a ratio of two timings of a tiny model, positive and
            # finite but not ordered (no timing is asserted; at tiny width it can fall either side of 1).
            assert 0 < float(row["time_bound"]) < float("inf")  # SNVs only
            assert float(row["of_time_bound"]) == pytest.approx(float(row["speedup"]) / float(row["time_bound"]))
        elif row["scenario"] == "centred-indel":
            assert row["time_bound"] == ""  # an indel recomputes part of the trunk too: no such floor
    assert all(record["transformer_per_edit_seconds"] > 0 for record in points.values())
    report = (out / "variants.md").read_text()
    assert "Machine:" in report and "FLOP bound" in report and "anchored-snv" in report
    assert "up to date" not in capsys.readouterr().out

    (out / "variants.png").unlink()
    assert main([*TINY, "--precision", "fp32", "--plot-only", "--out", str(out)]) == 0
    assert (out / "variants.png").is_file() and _document(out)["points"] == document["points"]


def test_derived_rows_follow_from_the_measured_times():
    record = {**asdict(VariantPoint(workload="anchored", **TINY_POINT)), "status": "ok",
              "engine_reference_seconds": 10.0, "plain_reference_seconds": 8.0, "plain_per_edit_seconds": 8.0,
              "workloads": {"snv": {"edits": 16, "per_edit_seconds": 2.0, "whole_flops_per_edit": 4.0,
                                    "engine_flops_per_edit": 1.0}}}
    rows = {(row["timing"], row["edits"]): row for row in summarize([record])}
    assert rows[("steady state", 16)]["speedup"] == 4.0 and rows[("steady state", 16)]["flop_bound"] == 4.0
    assert "time_bound" not in rows[("steady state", 16)]  # a record from before the floor was measured
    floored = {(row["timing"], row["edits"]): row
               for row in summarize([{**record, "transformer_per_edit_seconds": 1.6}])}
    assert floored[("steady state", 16)]["time_bound"] == pytest.approx(8.0 / 1.6)
    assert floored[("steady state", 16)]["of_time_bound"] == pytest.approx(4.0 / 5.0)
    amortised = rows[("amortised", 64)]
    assert amortised["engine_seconds"] == pytest.approx((10 + 64 * 2) / 64)
    assert amortised["plain_seconds"] == pytest.approx((8 + 64 * 8) / 64)
    assert amortised["flop_bound"] == pytest.approx(65 * 4 / (4 + 64))
    assert rows[("steady state", 16)]["goal_met"] is True  # full, fp32: issue 13's 3.5x goal


def test_resume_skips_finished_points_and_bf16_is_skipped_where_not_native(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench"
    anchored = [*TINY, "--workloads", "anchored", "--out", str(out)]
    assert main([*anchored, "--precision", "fp32"]) == 0
    first = _document(out)["points"]
    assert main([*anchored, "--precision", "fp32"]) == 0
    assert "is up to date" in capsys.readouterr().out
    assert _document(out)["points"] == first

    monkeypatch.setattr(variants, "bf16_supported", lambda device="cpu": False)
    assert main([*anchored, "--precision", "fp32,bf16"]) == 0
    assert "1 of 2 points already in" in capsys.readouterr().out
    points = {record["precision"]: record for record in _document(out)["points"]}
    assert points["fp32"] == first[0]  # not measured again
    assert points["bf16"]["status"] == "skipped" and "bf16 not run" in points["bf16"]["reason"]
    assert "none of avx512_bf16, amx_bf16" in points["bf16"]["reason"]
    assert "bf16 not run" in (out / "variants.md").read_text()

    # Other settings are other points: they are measured, not taken from the finished ones.
    assert main([*anchored, "--precision", "fp32", "--edits", "3"]) == 0
    assert sorted(r["edits"] for r in _document(out)["points"] if r["precision"] == "fp32") == [3, 4]

    # A record edited by hand (its timings are not of the settings its key names) is refused, not resumed.
    document = _document(out)
    document["points"][0]["batch_size"] = 1
    (out / "variants.json").write_text(json.dumps(document))
    capsys.readouterr()
    assert main([*anchored, "--precision", "fp32"]) == 2
    error = capsys.readouterr().err.strip()
    assert "point 0 is not a variants benchmark point" in error and error.count("\n") == 0


def test_an_engine_that_differs_from_the_plain_path_is_not_timed(monkeypatch):
    # An engine that forgets to patch the edited positions: fast and wrong.
    monkeypatch.setattr(EditEngine, "_patch", lambda self, features, windows, stale: None)
    result = measure_point(VariantPoint(workload="anchored", **TINY_POINT))
    assert not result["check"]["passed"] and result["check"]["relative"] > FP32_BOUND
    assert "workloads" not in result and "engine_reference_seconds" not in result


def test_the_bf16_rule_compares_with_plain_bf16_against_fp32():
    plain = {"human": torch.tensor([[1.0, 2.0]])}
    float32 = {"human": torch.tensor([[1.0, 2.01]])}  # plain bf16 is 0.01 from fp32
    close = {"human": torch.tensor([[1.0, 2.005]])}
    far = {"human": torch.tensor([[1.0, 2.05]])}
    assert equality_check(close, close, plain, plain, float32)["passed"]
    assert not equality_check(far, close, plain, plain, float32)["passed"]
    assert not equality_check({"human": torch.tensor([[1.0, float("nan")]])}, close, plain, plain)["passed"]
    # bf16's own error is measured on the same outputs as the engine's: the edits' error counts too
    edits_far_from_fp32 = {"human": torch.tensor([[1.0, 2.1]])}
    engine_edits = {"human": torch.tensor([[1.0, 2.06]])}
    assert not equality_check(plain, engine_edits, plain, plain, float32)["passed"]
    assert equality_check(plain, engine_edits, plain, edits_far_from_fp32, float32, plain)["passed"]
    assert not equality_check(plain, {"human": torch.tensor([[1.0, 2.3]])}, plain, edits_far_from_fp32, float32,
                              plain)["passed"]


def test_bad_settings_are_one_line(tmp_path, capsys):
    assert main([*TINY, "--edits", "1", "--plain-edits", "2", "--out", str(tmp_path / "b")]) == 2
    assert "plain edits (2) cannot exceed edits (1)" in capsys.readouterr().err
    assert main([*TINY, "--length", "4000", "--out", str(tmp_path / "b")]) == 2
    assert "4,000 bp" in capsys.readouterr().err
    assert main([*TINY, "--plot-only", "--out", str(tmp_path / "b")]) == 2
    assert "run the benchmark first" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_borzoi_points_time_the_engine_against_whole_windows_beside_the_flop_bound():
    from senformer.bench.variant_report import markdown_report
    from senformer.cli import build_parser
    from senformer.commands.benchmark import variants_settings

    point = VariantPoint(workload="anchored", family="borzoi", **{**TINY_POINT, "target_length": 16})
    record = {**asdict(point), **measure_point(point), "status": "ok", "key": point.key}
    assert record["check"]["passed"] and "family=borzoi" in point.key
    assert "family" not in VariantPoint(workload="anchored", **TINY_POINT).key  # Enformer records keep their keys
    rows = {(row["scenario"], row["timing"]): row for row in summarize([record])}
    snv = rows[("anchored-snv", "steady state")]
    assert snv["model"] == "borzoi" and snv["flop_bound"] > 1 and snv["speedup"] > 0 and "goal" not in snv
    assert snv["goal_of_bound"] == 0.8 and snv["goal_met"] == (snv["speedup"] >= 0.8 * snv["flop_bound"])
    report = markdown_report({"points": [record]}, list(rows.values()))
    assert "borzoi full" in report and ">= 80% of bound" in report
    settings = variants_settings(build_parser().parse_args(["benchmark", "variants", "--model", "borzoi", "--out", "x"]))
    assert (settings["family"], settings["dim"], settings["depth"], settings["length"], settings["target_length"]) == (
        "borzoi", 1536, 8, 524_288, None)  # Borzoi's published geometry by default
