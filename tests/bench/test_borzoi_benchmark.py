"""The Borzoi scaling benchmark on a tiny model: each point in its own capped process, resumable."""

import json

import pytest

from senformer.bench import borzoi

TINY = {"dim": 16, "depth": 1, "heads": 2, "key_size": 4, "stem_channels": 8, "stem_width": 5,
        "num_conv_tower_blocks": 3, "conv_tower_start": 8, "conv_tower_divisible_by": 4, "crop": 2,
        "final_channels": 12, "output_heads": {"human": 3}, "block_size": 4, "num_random_blocks": 1,
        "positional_basis_length": 64}


def test_points_are_measured_once_and_resumed(tmp_path, capsys):
    out = tmp_path / "borzoi.json"
    argv = ["--out", str(out), "--lengths", "2048,4096", "--kinds", "full,bigbird", "--modes", "inference,train",
            "--threads", "1", "--memory-cap-gb", "4", "--timeout-s", "300"]
    argv += [f"--set={key}={json.dumps(value)}" for key, value in TINY.items()]
    assert borzoi.main(argv) == 0
    records = json.loads(out.read_text())["records"]
    assert len(records) == 8 and all(r["status"] == "ok" for r in records), records
    assert all(r["median_s"] > 0 and r["peak_memory_mb"] >= 0 for r in records)
    assert {(r["kind"], r["mode"], r["length"]) for r in records} == {
        (k, m, n) for k in ("full", "bigbird") for m in ("inference", "train") for n in (2048, 4096)}
    assert "bigbird" in capsys.readouterr().out
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = out.read_text()
    assert borzoi.main(argv) == 0  # every point is there: nothing runs again
    assert out.read_text() == before


def test_figure_marks_points_that_do_not_fit(tmp_path):
    records = [{"kind": kind, "mode": "train", "length": length, "status": status, "median_s": 2.0,
                "peak_memory_mb": 2048.0, "memory_cap_gb": 20.0}
               for kind, status in (("bigbird", "ok"), (borzoi.PEER, "oom")) for length in (262_144, 524_288)]
    path = borzoi.draw_figure(records, tmp_path / "f.png")
    assert path.stat().st_size > 1000


def test_bad_options_are_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        borzoi.main(["--out", str(tmp_path / "x.json"), "--kinds", "sparse"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        borzoi.main(["--out", str(tmp_path / "x.json"), "--set", "depth"])


@pytest.mark.slow
def test_peer_points_run_at_lengths_other_than_its_own():
    # borzoi-pytorch crops to 16,352 bins (524,288 bp) unless told; the benchmark keeps all but 16 per side.
    pytest.importorskip("borzoi_pytorch")
    result = borzoi.measure({"length": 16_384, "kind": borzoi.PEER, "mode": "inference", "device": "cpu",
                             "settings": {"depth": 1}, "warmup": 0, "repeats": 1})
    assert result["median_s"] > 0 and result["memory_measure"] == "peak_rss_delta"
