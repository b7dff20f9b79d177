"""The scaling benchmark's machinery: the memory cap, FLOP counts, the summary, resuming, the CLI.

Timings are never asserted (benchmarks are scripts, not tests); what is checked is that each point is
isolated and capped, that records and derived numbers are right, and that a run resumes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from senformer.bench import memory, sweep
from senformer.bench.flops import step_flops
from senformer.bench.measure import measure_point
from senformer.bench.points import Point
from senformer.bench.summary import fit_exponent, summarize
from senformer.bench.sweep import Sweep, sweep_points
from senformer.cli import main
from senformer.errors import UserError

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

MB = 1 << 20


# The memory cap -----------------------------------------------------------------------------------
def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


ALLOCATE = """
import sys
from senformer.bench import memory

def allocate(payload):
    block = bytearray(payload["megabytes"] << 20)
    block[::4096] = b"x" * len(block[::4096])  # touched, so resident
    return {"allocated": len(block)}

sys.exit(memory.child_main(allocate, sys.argv[1:3]))
"""


def run_allocation(tmp_path, megabytes: int, cap_megabytes: int) -> memory.CappedRun:
    """A child that allocates ``megabytes`` and exits at once: its peak may fall between two samples."""
    (tmp_path / "allocate_child.py").write_text(ALLOCATE)
    source = Path(memory.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(source)])}
    return memory.run_isolated("allocate_child", {"megabytes": megabytes}, cap_megabytes * MB, env=env)


def test_child_within_the_cap_is_ok_and_its_own_peak_is_seen(tmp_path):
    big = bytearray(600 * MB)  # this process's size must not count towards its child's
    big[::4096] = b"x" * len(big[::4096])
    run = run_allocation(tmp_path, 200, cap_megabytes=500)
    assert run.status == "ok" and run.result["allocated"] == 200 * MB
    assert 200 * MB < run.peak_rss_bytes < 500 * MB


def test_a_peak_over_the_cap_is_out_of_memory_whether_or_not_a_sample_saw_it(tmp_path):
    run = run_allocation(tmp_path, 400, cap_megabytes=300)
    assert run.status == "oom" and run.peak_rss_bytes > 300 * MB


def test_child_passing_the_cap_is_killed_and_recorded_as_oom():
    grow = "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20)); time.sleep(0.01)"
    run = memory.run_capped(python(grow), 300 * MB)
    assert run.status == "oom"
    assert run.returncode < 0  # killed by the parent, not a crash of the parent
    assert run.peak_rss_bytes > 300 * MB


def test_memory_of_grandchildren_counts_towards_the_cap():
    grandchild = "import time; b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(3600)"
    spawn = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}])"
    run = memory.run_capped(python(spawn), 200 * MB)
    # Killed at the cap although the child itself is small (the grandchild's memory counted), before the
    # grandchild's hour-long sleep could end.
    assert run.status == "oom" and run.returncode == -signal.SIGKILL


def test_errors_and_timeouts_are_distinguished():
    failed = memory.run_capped(python("raise SystemExit('bad input')"), 500 * MB, timeout_s=60)
    assert failed.status == "error" and "bad input" in failed.stderr_tail
    slow = memory.run_capped(python("import time; time.sleep(3600)"), 500 * MB, timeout_s=0.5)
    assert slow.status == "timeout" and slow.returncode == -signal.SIGKILL
    allocation = memory.run_capped(python(f"raise SystemExit({memory.OOM_EXIT_CODE})"), 500 * MB)
    assert allocation.status == "oom"


def test_cap_must_be_positive():
    with pytest.raises(ValueError, match="memory cap must be positive"):
        memory.run_capped(python("pass"), 0)


def test_saved_tensor_bytes_counts_each_storage_once():
    import torch

    x = torch.randn(100, requires_grad=True)
    assert memory.saved_tensor_bytes(lambda t: t * t, x) == 400  # saved twice by one product, counted once
    assert memory.saved_tensor_bytes(lambda t: (t * 2).exp(), x) == 400  # exp keeps its 100-float output
    assert memory.saved_tensor_bytes(lambda t: t + 1, x) == 0


def test_out_of_memory_errors_are_recognised():
    import torch

    assert memory.is_out_of_memory(MemoryError())
    assert memory.is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"))
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not memory.is_out_of_memory(RuntimeError("shape mismatch"))


# Step FLOPs ----------------------------------------------------------------------------------
def test_training_step_counts_three_forwards():
    point = Point(length=131_072, mode="train")
    assert step_flops(point) == 3 * step_flops(Point(length=131_072, mode="inference"))
    peer = Point(length=131_072, mode="inference", implementation="enformer-pytorch", conv_tile_length=None)
    assert step_flops(peer) == step_flops(Point(length=131_072, mode="inference"))  # the same model


# Points and the summary --------------------------------------------------------------------------
def test_point_validation_and_reduced_widths():
    with pytest.raises(ValueError, match="has only full attention"):
        Point(length=131_072, attention="bigbird", implementation="enformer-pytorch")
    with pytest.raises(ValueError, match="mode 'walk'"):
        Point(length=131_072, mode="walk")
    assert Point(length=131_072, dim=256).config().relative_features == 30  # 32 rounded to the 6 families
    assert Point(length=131_072, dim=384).config().relative_features == 48
    with pytest.raises(ValueError, match="last tower filter of dim=192 to 256"):
        Point(length=131_072, dim=192).config()


def test_sweep_points_order_and_peer_curves():
    points = sweep_points([262_144, 131_072], ["full", "bigbird"], depths=[1, 11], peer=True)
    assert len(points) == 2 * 3 * 2
    assert [p.length for p in points[:2]] == [131_072, 262_144]  # shortest first along each curve
    assert {p.attention for p in points if p.implementation == "enformer-pytorch"} == {"full"}
    assert all(p.conv_tile_length is None for p in points)  # tiling applies to inference only


def record(point: Point, status="ok", seconds=1.0, peak=1e9, baseline=5e8, **extra) -> dict:
    row = {"key": point.key, **asdict(point), "status": status, "memory_cap_bytes": int(20e9)}
    if status == "ok":
        row.update(median_seconds=seconds, peak_rss_bytes=peak, baseline_rss_bytes=baseline)
    row.update(extra)
    return row


def synthetic_records() -> list[dict]:
    """full: quadratic per-layer cost; bigbird: linear; depth 1 and 11; full 11 layers OOM at the longest."""
    rows = []
    for length in (131_072, 262_144, 524_288):
        scale = length / 131_072
        for depth in (1, 11):
            full = Point(length=length, attention="full", depth=depth)
            sparse = Point(length=length, attention="bigbird", depth=depth)
            base = 2e9 * scale
            if depth == 11 and length == 524_288:
                rows.append(record(full, status="oom"))
            else:
                rows.append(record(full, seconds=10 * scale + (depth - 1) * scale**2,
                                   peak=base + (depth - 1) * 0.1e9 * scale**2))
            rows.append(record(sparse, seconds=10 * scale + (depth - 1) * 0.5 * scale,
                               peak=base + (depth - 1) * 0.12e9 * scale))
    return rows


def test_summary_per_layer_exponents_and_ratios():
    summary = summarize(synthetic_records())
    layer = {(p["attention"], p["length"]): p for p in summary["per_layer"]}
    assert layer[("full", 262_144)]["seconds"] == pytest.approx(4.0)  # (11-layer - 1-layer) / 10
    assert layer[("bigbird", 262_144)]["memory_bytes"] == pytest.approx(0.24e9)
    assert ("full", 524_288) not in layer  # its 11-layer point is out of memory

    exponents = {(e["attention"], e["depth"]): e for e in summary["exponents"]}
    assert exponents[("bigbird", "per_layer")]["memory"] == pytest.approx(1.0)
    assert exponents[("full", "per_layer")]["time"] == pytest.approx(2.0)
    assert exponents[("bigbird", 1)]["memory"] == pytest.approx(1.0)

    rows = {(r["depth"], r["length"]): r for r in summary["against_full"]}
    assert rows[(11, 262_144)]["per_layer_speedup"] == pytest.approx(4.0 / 1.0)
    assert rows[(11, 262_144)]["per_layer_memory_ratio"] == pytest.approx(0.24e9 / 0.4e9)
    assert rows[(11, 524_288)]["full"] == "oom"

    longest = {(r["attention"], r["depth"]): r for r in summary["longest"]}
    assert longest[("full", 11)] == {**longest[("full", 11)], "longest_ok": 262_144, "shortest_oom": 524_288}
    assert longest[("bigbird", 11)]["shortest_oom"] is None


def test_summary_against_the_peer_and_bf16():
    ours = Point(length=196_608, mode="inference", depth=11)
    peer = Point(length=196_608, mode="inference", depth=11, implementation="enformer-pytorch", conv_tile_length=None)
    ours_bf16 = Point(**{**asdict(ours), "precision": "bf16"})
    summary = summarize([
        record(ours, seconds=20.0, peak=2e9), record(peer, seconds=37.5, peak=4.4e9),
        record(ours_bf16, seconds=10.0, peak=1.5e9, bf16_max_difference_over_max=0.004),
    ])
    (row,) = [r for r in summary["against_peer"] if r["precision"] == "fp32"]
    assert row["speedup"] == pytest.approx(37.5 / 20.0) and row["memory_ratio"] == pytest.approx(2 / 4.4)
    (gain,) = summary["bf16"]
    assert gain["speedup"] == pytest.approx(2.0) and gain["bf16_max_difference_over_max"] == 0.004


def test_fit_exponent():
    assert fit_exponent([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    assert fit_exponent([1], [1]) is None


# Resuming ----------------------------------------------------------------------------------------
class FakeSweep(Sweep):
    """Measures nothing: records a made-up result, counting calls (no models, no subprocesses)."""

    calls: list[Point]
    matmul_precisions: list[str]

    def measure(self, point: Point) -> dict:
        self.calls.append(point)
        if point.attention == "full" and point.length >= 262_144:
            return self._record(point, status="oom", peak_rss_bytes=int(21e9), reason="passed the cap")
        return self._record(point, status="ok", median_seconds=point.length / 1e5, peak_rss_bytes=point.length * 1e4,
                            baseline_rss_bytes=5e8)

    def ensure_matmul_rates(self, device, threads, precisions):
        self.matmul_precisions = list(precisions)
        self.document["matmul"] = [{"device": "cpu", "threads": 0, "precision": "fp32", "gflops": 100.0}]


def test_sweep_resumes_and_skips_lengths_past_an_oom(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "peer_status", lambda: (False, "enformer-pytorch is not importable (test)"))
    points = sweep_points([131_072, 262_144, 393_216], ["full", "bigbird"], depths=[1, 11], peer=True)
    first = FakeSweep(tmp_path, log=lambda line: None)
    first.calls = []
    document = first.run(points)
    statuses = {(r["implementation"], r["attention"], r["depth"], r["length"]): r for r in document["points"]}
    assert statuses[("senformer", "full", 11, 393_216)]["status"] == "oom"
    assert statuses[("senformer", "full", 11, 393_216)]["inferred"] is True  # 262,144 already failed
    assert statuses[("enformer-pytorch", "full", 1, 131_072)]["status"] == "skipped"
    assert "not importable" in statuses[("enformer-pytorch", "full", 1, 131_072)]["reason"]
    assert len(first.calls) == 2 * (3 + 2)  # per depth: bigbird x 3, full x 2 (the third inferred)

    second = FakeSweep(tmp_path, log=lambda line: None)
    second.calls = []
    second.run(points)
    assert second.calls == []  # everything measured is skipped; only skipped peer points were retried
    saved = json.loads((tmp_path / "scaling.json").read_text())
    assert len(saved["points"]) == len(points) and len(saved["runs"]) == 2
    with open(tmp_path / "scaling.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(points) and {"status", "median_seconds", "peak_rss_bytes"} <= set(rows[0])
    assert saved["summary"]["per_layer"]
    report = (tmp_path / "scaling.md").read_text()
    assert "| bigbird | train | fp32 | off |  | 1536 | 11 | 393,216 | ok |" in report
    assert "| full | train | fp32 | off |  | 1536 | 11 | 393,216 | oom (not run) |" in report
    assert "Sparse kinds against `full`" in report
    assert second.plot().exists()


def test_checkpoint_scopes_set_the_model_switches():
    switches = {scope: Point(length=131_072, checkpoint=scope).config() for scope in ("off", "conv", "all")}
    assert [(c.checkpoint_conv_tower, c.checkpoint_transformer) for c in switches.values()] == [
        (False, False), (True, False), (True, True)]
    for scope in ("some", True):
        with pytest.raises(ValueError, match=f"checkpoint {scope!r} is not one of off, conv, all"):
            Point(length=131_072, checkpoint=scope)


@pytest.mark.parametrize("folder", sorted(path.name for path in RESULTS.glob("scaling_*")))
def test_recorded_results_resume(folder, tmp_path):
    """Every recorded sweep reads back as points: a resumed run would skip exactly what it measured."""
    recorded = Sweep(RESULTS / folder)
    points = [Point.from_record(record) for record in recorded.document["points"]]
    assert [point.key for point in points] == [record["key"] for record in recorded.document["points"]]
    measured = recorded.measured()
    assert measured and all(record["status"] in ("ok", "oom", "timeout") for record in measured.values())
    # Its summary and tables are drawn again from the records as they are (no point is dropped).
    copy = Sweep(tmp_path, log=lambda line: None)
    copy.document = recorded.document
    copy.save()
    assert len(list(csv.DictReader((tmp_path / "scaling.csv").read_text().splitlines()))) == len(points)


def test_bf16_points_are_skipped_with_the_reason_where_bf16_is_not_native(tmp_path, monkeypatch):
    points = sweep_points([131_072], ["bigbird"], depths=[1], precisions=["fp32", "bf16"], peer=False)
    monkeypatch.setattr(sweep, "bf16_supported", lambda device: False)
    emulated = FakeSweep(tmp_path / "emulated", log=lambda line: None)
    emulated.calls = []
    document = emulated.run(points)
    by_precision = {r["precision"]: r for r in document["points"]}
    assert by_precision["fp32"]["status"] == "ok" and by_precision["bf16"]["status"] == "skipped"
    assert "avx512_bf16" in by_precision["bf16"]["reason"] and "emulated" in by_precision["bf16"]["reason"]
    assert [p.precision for p in emulated.calls] == ["fp32"] and emulated.matmul_precisions == ["fp32"]
    assert "bf16 not run" in (tmp_path / "emulated" / "scaling.md").read_text()

    monkeypatch.setattr(sweep, "bf16_supported", lambda device: True)
    native = FakeSweep(tmp_path / "native", log=lambda line: None)
    native.calls = []
    native.run(points)
    assert sorted(p.precision for p in native.calls) == ["bf16", "fp32"]
    assert native.matmul_precisions == ["bf16", "fp32"]


def test_corrupt_results_are_a_user_error(tmp_path):
    (tmp_path / "scaling.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Sweep(tmp_path)
    old = {**asdict(Point(length=131_072)), "checkpoint": True, "status": "ok"}  # recorded before the scopes
    (tmp_path / "scaling.json").write_text(json.dumps({"runs": [], "matmul": [], "points": [old]}))
    with pytest.raises(UserError, match=r"point 0 is not a benchmark point .*checkpoint True is not one of off"):
        Sweep(tmp_path)


# End to end: real points in capped subprocesses ------------------------------------------------------
@pytest.mark.slow
def test_cli_runs_a_tiny_sweep_and_resumes(tmp_path, capsys):
    out = tmp_path / "scaling"
    arguments = ["benchmark", "scaling", "--out", str(out), "--dim", "256", "--lengths", "16384",
                 "--target-length", "8", "--depths", "1", "--attention", "bigbird", "--repeats", "1",
                 "--warmup", "0", "--no-peer", "--threads", "1", "--memory-cap-gb", "4"]
    assert main(arguments) == 0
    document = json.loads((out / "scaling.json").read_text())
    (point,) = document["points"]
    assert point["status"] == "ok", point
    assert point["median_seconds"] > 0 and point["peak_rss_bytes"] > point["baseline_rss_bytes"] > 0
    assert 0 < point["achieved_gflops"] and math.isfinite(point["fraction_of_matmul_rate"])
    assert [m["precision"] for m in document["matmul"]] == ["fp32"]  # only the precisions the sweep runs
    assert document["runs"][0]["machine"]["torch"]
    assert (out / "scaling.png").stat().st_size > 10_000 and (out / "settings.json").exists()
    capsys.readouterr()
    recorded = (out / "scaling.json").read_bytes()
    assert main(arguments) == 0  # every point recorded with these settings: the one rule says up to date
    assert f"{out} is up to date" in capsys.readouterr().out
    assert (out / "scaling.json").read_bytes() == recorded  # nothing measured again


@pytest.mark.slow
def test_point_over_its_cap_is_an_oom_data_point(tmp_path):
    sweep = Sweep(tmp_path, memory_cap_bytes=200 * MB, repeats=1, warmup=0, log=lambda line: None)
    recorded = sweep.measure(Point(length=16_384, dim=256, depth=1, target_length=8, threads=1))
    assert recorded["status"] == "oom" and "cap" in recorded["reason"]


@pytest.mark.slow
def test_measure_point_inference_bf16_reports_its_difference():
    result = measure_point(Point(length=16_384, dim=256, depth=1, target_length=8, mode="inference",
                                         precision="bf16", attention="bigbird", threads=1), warmup=0, repeats=1)
    assert 0 < result["bf16_max_difference_over_max"] < 0.1
    assert len(result["seconds"]) == 1


@pytest.mark.slow
def test_peer_point_runs_when_enformer_pytorch_is_installed():
    pytest.importorskip("enformer_pytorch")
    result = measure_point(Point(length=16_384, dim=384, depth=1, target_length=8, mode="fwd_bwd",
                                         implementation="enformer-pytorch", threads=1), warmup=0, repeats=1)
    assert result["median_seconds"] > 0 and result["parameters"] > 1e6


def test_cli_rejects_bad_settings(tmp_path, capsys):
    assert main(["benchmark", "scaling", "--out", str(tmp_path), "--lengths", "1000"]) == 2
    assert "not valid" in capsys.readouterr().err
    assert main(["benchmark", "scaling", "--out", str(tmp_path), "--dim", "192"]) == 2
    assert "last tower filter of dim=192 to 256" in capsys.readouterr().err
