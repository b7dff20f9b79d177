"""The Borzoi benchmark (``senformer benchmark borzoi``) on a tiny model: each point in its own capped process,
resumable, compared with borzoi-pytorch at the same points."""

import json

import pytest

from senformer.bench import borzoi
from senformer.cli import main

TINY = {"dim": 16, "depth": 1, "heads": 2, "key_size": 4, "stem_channels": 8, "stem_width": 5,
        "num_conv_tower_blocks": 3, "conv_tower_start": 8, "conv_tower_divisible_by": 4, "crop": 2,
        "final_channels": 12, "output_heads": {"human": 3}, "block_size": 4, "num_random_blocks": 1,
        "positional_basis_length": 64}


def test_points_are_measured_once_and_resumed(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["benchmark", "borzoi", "--out", str(out), "--lengths", "2048", "--kinds", "full,bigbird",
            "--modes", "inference,train", "--threads", "1", "--memory-cap-gb", "4", "--timeout", "300",
            "--repeats", "1", "--no-progress"]
    argv += [f"--set={key}={json.dumps(value)}" for key, value in TINY.items()]
    assert main(argv) == 0
    records = json.loads((out / "borzoi.json").read_text())["records"]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records), records
    assert all(r["median_s"] > 0 and r["peak_memory_mb"] >= 0 and r["process_peak_mb"] > 0 for r in records)
    assert {(r["kind"], r["mode"], r["length"], r["precision"]) for r in records} == {
        (k, m, 2048, "fp32") for k in ("full", "bigbird") for m in ("inference", "train")}
    assert "bigbird" in capsys.readouterr().out
    assert (out / "borzoi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bigbird" in (out / "borzoi.md").read_text() and (out / "run.json").is_file()
    before = (out / "borzoi.json").read_text()
    assert main(argv) == 0  # every point is there: nothing runs again
    assert (out / "borzoi.json").read_text() == before
    assert "up to date" in capsys.readouterr().out


def test_comparison_is_against_the_peer_at_the_same_point():
    def record(kind, seconds, mb, precision="fp32", length=524_288):
        return {"kind": kind, "mode": "inference", "precision": precision, "length": length, "status": "ok",
                "median_s": seconds, "peak_memory_mb": mb, "process_peak_mb": mb + 500}

    records = [record(borzoi.PEER, 46.0, 4000.0), record("full", 23.0, 2000.0), record("bigbird", 46.0, 1000.0),
               record("full", 10.0, 1500.0, precision="bf16"),  # no bf16 peer point: not compared
               record("full", 1.0, 1.0, length=262_144)]
    rows = {(r["kind"], r["precision"], r["length"]): r for r in borzoi.comparison(records)}
    assert set(rows) == {("full", "fp32", 524_288), ("bigbird", "fp32", 524_288)}
    assert rows["full", "fp32", 524_288]["speedup"] == pytest.approx(2.0)
    assert rows["full", "fp32", 524_288]["memory_ratio"] == pytest.approx(0.5)
    assert rows["bigbird", "fp32", 524_288]["process_memory_ratio"] == pytest.approx(1500 / 4500)
    table = borzoi.format_table(records)
    assert "2.00x" in table and "0.50x" in table


def test_the_table_names_each_points_settings_and_reads_by_length():
    def record(length, settings, status="ok"):
        return {"kind": "bigbird", "mode": "train", "precision": "fp32", "length": length, "status": status,
                "median_s": 1.0, "peak_memory_mb": 1.0, "settings": settings}

    records = [record(524_288, {}, "oom"), record(524_288, {"checkpoint_transformer": True}), record(262_144, {})]
    lines = borzoi.format_table(records).splitlines()
    assert lines[0].endswith("settings")
    assert "262,144" in lines[1] and "524,288" in lines[2] and "OOM" in lines[2]  # published settings first
    assert lines[3].endswith("checkpoint_transformer=true") and "OOM" not in lines[3]


def test_flex_kinds_switch_the_position_term_in_the_child(monkeypatch):
    # The payload's kind decides the child's FlexAttention switch: measured both ways, never by inheritance.
    seen = []
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "1")  # restored afterwards: measure() sets it for its process
    monkeypatch.setattr(borzoi.memory, "time_steps", lambda step, *a, **k: seen.append(
        borzoi.os.environ["SENFORMER_FLEX_ATTENTION"]) or {"median_s": 1.0})
    for kind in ("bigbird+flex", "bigbird"):
        borzoi.measure({"length": 2048, "kind": kind, "mode": "inference", "device": "cpu", "settings": TINY})
    assert seen == ["1", "0"]


def test_bf16_is_skipped_with_the_reason_where_not_native(tmp_path, monkeypatch):
    monkeypatch.setattr("senformer.device.bf16_supported", lambda device="cpu", cpuinfo=None: False)
    out = tmp_path / "b.json"
    records = borzoi.run_points(borzoi.plan([2048], ["full"], ["inference"], ["bf16"], "cpu", 1, TINY, 1), out, 4, 60)
    assert [r["status"] for r in records] == ["skipped"] and "bf16" in records[0]["reason"]


def test_figure_marks_points_that_do_not_fit(tmp_path):
    records = [{"kind": kind, "mode": "train", "length": length, "status": status, "median_s": 2.0,
                "peak_memory_mb": 2048.0, "memory_cap_gb": 20.0}
               for kind, status in (("bigbird", "ok"), (borzoi.PEER, "oom")) for length in (262_144, 524_288)]
    records.append({**records[0], "settings": {"checkpoint_transformer": True}})  # its own line and label
    path = borzoi.draw_figure(records, tmp_path / "f.png")
    assert path.stat().st_size > 1000


def test_bad_options_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "borzoi", "--out", str(tmp_path / "x"), "--kinds", "sparse"])
    assert exit_info.value.code == 2
    assert main(["benchmark", "borzoi", "--out", str(tmp_path / "x"), "--lengths", "3000"]) == 2
    assert "multiples of 2,048" in capsys.readouterr().err
    assert main(["benchmark", "borzoi", "--out", str(tmp_path / "x"), "--set", "depth"]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_peer_points_run_at_lengths_other_than_its_own():
    # borzoi-pytorch crops to 16,352 bins (524,288 bp) unless told; the benchmark keeps all but 16 per side.
    pytest.importorskip("borzoi_pytorch")
    result = borzoi.measure({"length": 16_384, "kind": borzoi.PEER, "mode": "inference", "device": "cpu",
                             "settings": {"depth": 1}, "warmup": 0, "repeats": 1})
    assert result["median_s"] > 0 and result["memory_measure"] == "peak_rss_delta"


def test_repeated_set_checkpoints_our_kinds(tmp_path, monkeypatch):
    # `--set checkpoint_transformer=true --set checkpoint_conv_tower=true` reaches every point's Borzoi; a
    # training point with both runs (in this process here: the child runs the same measure()).
    planned = []
    monkeypatch.setattr(borzoi, "run_points", lambda points, *args, **kwargs: planned.extend(points) or [])
    monkeypatch.setattr(borzoi, "draw_figure", lambda records, path: path)  # nothing measured: nothing to draw
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "0")  # restored afterwards: measure() sets it
    argv = ["benchmark", "borzoi", "--out", str(tmp_path / "bench"), "--lengths", "2048", "--kinds", "full,bigbird",
            "--modes", "train", "--repeats", "1", "--no-progress",
            "--set", "checkpoint_transformer=true", "--set", "checkpoint_conv_tower=true"]
    argv += [f"--set={key}={json.dumps(value)}" for key, value in TINY.items()]
    assert main(argv) == 0
    assert [point["kind"] for point in planned] == ["full", "bigbird"]
    for point in planned:
        model, _ = borzoi._build(point["kind"], point["settings"], "cpu", point["length"])
        assert model.config.checkpoint_conv_tower is True and model.config.checkpoint_transformer is True
    assert borzoi.measure({**planned[1], "warmup": 0})["median_s"] > 0
