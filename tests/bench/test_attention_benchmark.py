"""The attention benchmark's machinery on tiny settings (speed targets live in the recorded runs)."""

import json

import pytest

from senformer.bench.attention import format_table, run_benchmark


@pytest.mark.slow
def test_benchmark_records_every_point_with_ratios_and_writes_json_and_png(tmp_path):
    result = run_benchmark(lengths=[64, 128], repeats=1, dim=48, heads=2, threads=1, out_dir=tmp_path, progress=False)
    records = result["records"]
    assert {(r["kind"], r["length"]) for r in records} == {(k, n) for k in ("full", "chunked", "bigbird") for n in (64, 128)}
    assert all(r["status"] == "ok" and r["median_s"] > 0 and r["peak_memory_mb"] >= 0 for r in records)
    assert all(r["speedup_vs_full"] == pytest.approx(1.0) for r in records if r["kind"] == "full")
    saved = json.loads((tmp_path / "attention.json").read_text())
    assert saved["machine"]["torch"] and len(saved["records"]) == 6
    assert (tmp_path / "attention.png").read_bytes()[:4] == b"\x89PNG"
    assert "bigbird" in format_table(records)


@pytest.mark.slow
def test_a_point_over_the_memory_cap_is_recorded_as_out_of_memory(tmp_path):
    result = run_benchmark(lengths=[4096], kinds=["full"], repeats=1, dim=96, heads=8, threads=1,
                           memory_cap_gb=0.35, progress=False)
    (record,) = result["records"]
    assert record["status"] == "oom" and "speedup_vs_full" not in record
    assert "OOM" in format_table(result["records"])
