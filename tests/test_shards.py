"""Sharded runs (``--shard K/N``, torchrun ranks) of ``predict`` and ``analyze variants`` equal one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import run_killed_at, seeded_kill_point, tiny_model, write_random_chromosome
from senformer import save_model
from senformer.cli import main
from senformer.errors import UserError
from senformer.outputs import Shard, resolve_shard, unit_starts

VARIANTS = Path(__file__).parent / "data" / "fixtures" / "variants"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_random_chromosome(root / "genome.fa", 9_000, seed=5)
    # Mostly one window each, two regions of two or three windows: units of whole batches differ from regions.
    widths = [100, 100, 2000, 100, 100, 1500, 100, 100, 100]
    (root / "regions.bed").write_text("".join(f"chr1\t{600 + 900 * i}\t{600 + 900 * i + w}\tr{i}\n"
                                              for i, w in enumerate(widths)))
    save_model(tiny_model(seed=11), root / "model")
    shutil.copy(VARIANTS / "genome.fa", root / "variants.fa")
    return root


def predict_args(workspace, out, *extra):
    return ["predict", "--weights", str(workspace / "model"), "--fasta", str(workspace / "genome.fa"),
            "--regions", str(workspace / "regions.bed"), "--length", "1024", "--batch-size", "2", "--rc",
            "--threads", "1", "--no-progress", "--out", str(out), *extra]


def variants_args(workspace, out, *extra):
    return ["analyze", "variants", "--weights", str(workspace / "model"), "--fasta", str(workspace / "variants.fa"),
            "--vcf", str(VARIANTS / "variants.vcf.gz"), "--length", "1024", "--batch-size", "2",
            "--allow-ref-mismatch", "--threads", "1", "--no-progress", "--out", str(out), *extra]


def datasets(path: Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, item[...]) if isinstance(item, h5py.Dataset)
                          else None)
    return found


def assert_same_data(one: Path, other: Path) -> None:
    """HDF5: every dataset of the same shape, dtype and bytes; a table: the same bytes."""
    if one.suffix != ".h5":
        assert one.read_bytes() == other.read_bytes()
        return
    expected, found = datasets(one), datasets(other)
    assert sorted(expected) == sorted(found)
    for name, values in expected.items():
        assert values.dtype == found[name].dtype and values.shape == found[name].shape, name
        if values.dtype.kind == "O":
            assert values.tolist() == found[name].tolist(), name
        else:
            assert values.tobytes() == found[name].tobytes(), name


@pytest.fixture(scope="module")
def single(workspace):
    """The one-process outputs every sharded run is compared with."""
    outputs = {}
    for name, args in (("predict.h5", predict_args), ("variants.h5", variants_args),
                       ("variants.tsv.gz", variants_args), ("variants.tsv", variants_args)):
        out = workspace / "single" / name
        assert main(args(workspace, out)) == 0
        outputs[name] = out
    return outputs


def test_shards_and_units():
    assert Shard.parse("1/3") == Shard(1, 3)
    assert [Shard(k, 3).bounds(7) for k in range(3)] == [(0, 2), (2, 4), (4, 7)]
    for text in ("3/3", "1", "-1/2", "a/b"):
        with pytest.raises(UserError, match="--shard"):
            Shard.parse(text)
    assert resolve_shard(None, {}) is None
    assert resolve_shard("2/4", {}) == Shard(2, 4)
    assert resolve_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    with pytest.raises(UserError, match="disagrees with torchrun"):
        resolve_shard("0/3", {"RANK": "1", "WORLD_SIZE": "2"})
    # windows per region 1, 1, 3, 1, 2, 1 in batches of 2: a unit ends where a batch ends with a region
    assert unit_starts([1, 1, 3, 1, 2, 1], 2) == [0, 2, 4, 5]
    assert unit_starts([1, 1, 1], 1) == [0, 1, 2]


@pytest.mark.parametrize("name", ["predict.h5", "variants.h5", "variants.tsv.gz", "variants.tsv"])
def test_two_shards_merge_into_the_one_process_output(workspace, single, tmp_path, capsys, name):
    args = predict_args if name.startswith("predict") else variants_args
    out = tmp_path / name
    assert main(args(workspace, out, "--shard", "1/2")) == 0
    assert "wrote part 1/2" in capsys.readouterr().out and not out.exists()
    assert sorted(p.name for p in (tmp_path / f"{name}.shards").iterdir() if not p.name.endswith(".lock")) == [
        f"part-1-of-2.{name.split('.', 1)[1]}", f"part-1-of-2.{name.split('.', 1)[1]}.run.json", "split.json"]
    assert main(args(workspace, out, "--shard", "0/2")) == 0
    assert f"wrote {out} from 2 parts" in capsys.readouterr().out
    assert_same_data(single[name], out)
    assert not (tmp_path / f"{name}.shards").exists() and not (tmp_path / f"{name}.shards.lock").exists()
    record = json.loads(Path(f"{out}.run.json").read_text())
    assert record["fingerprint"] == json.loads(Path(f"{single[name]}.run.json").read_text())["fingerprint"]
    if name.startswith("variants"):
        expected = json.loads(Path(f"{single[name]}.run.json").read_text())["settings"]
        assert record["settings"]["counts"] == expected["counts"] and expected["counts"]["scored"] == 9
        assert record["settings"]["bases_sha256"] == expected["bases_sha256"]
    # every shard, and a one-process run, now finds the merged output up to date
    assert main(args(workspace, out, "--shard", "1/2")) == 0
    assert main(args(workspace, out)) == 0
    assert capsys.readouterr().out.count(f"{out} is up to date") == 2


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["predict.h5", "variants.h5", "variants.tsv.gz"])
def test_a_shard_killed_at_a_seeded_write_resumes_and_the_merge_equals_one_process(workspace, single, tmp_path,
                                                                                   capsys, name, seed):
    args = predict_args if name.startswith("predict") else variants_args
    out = tmp_path / name
    ext = name.split(".", 1)[1]
    # SIGKILL from outside at a write point drawn with the seed (the same point on every run of the seed); a
    # resumed predict part starts again at a unit's start, so its batches stay those of one process
    # (not in the last two renames, which finish the part: then shard 0 would merge)
    kill_at = seeded_kill_point(seed, args(workspace, tmp_path / "count" / name, "--shard", "1/2"), spare=2)
    killed, _, stderr = run_killed_at(args(workspace, out, "--shard", "1/2"), kill_at)
    assert killed == -signal.SIGKILL, stderr
    assert not (tmp_path / f"{name}.shards" / f"part-1-of-2.{ext}").exists()  # the part never looks done
    assert main(args(workspace, out, "--shard", "0/2")) == 0
    assert "wrote part 0/2" in capsys.readouterr().out and not out.exists()
    # another number of shards, or one process, is refused in one line while the split is unfinished
    assert main(args(workspace, out, "--shard", "0/3")) == 2
    assert main(args(workspace, out)) == 2
    refusals = capsys.readouterr().err.splitlines()
    assert len(refusals) == 2 and all("split 2 ways" in line for line in refusals) and not out.exists()
    assert main(args(workspace, out, "--shard", "1/2")) == 0
    assert f"wrote {out} from 2 parts" in capsys.readouterr().out
    assert_same_data(single[name], out)


def test_more_shards_than_work_and_parts_of_other_inputs(workspace, single, tmp_path, capsys):
    out = tmp_path / "predict.h5"
    # 9 regions in batches of 2 make fewer units than 9 shards: some parts hold nothing
    for index in range(9):
        assert main(predict_args(workspace, out, "--shard", f"{index}/9")) == 0
    assert_same_data(single["predict.h5"], out)
    # a part of other settings (no --rc) is replaced, with one line saying so; the old output needs --overwrite
    stale = tmp_path / "stale.h5"
    assert main(predict_args(workspace, stale, "--shard", "0/2")) == 0
    assert main([a for a in predict_args(workspace, stale, "--shard", "0/2") if a != "--rc"]) == 0
    assert "was written from other inputs: starting it again" in capsys.readouterr().err
    assert main([a for a in predict_args(workspace, out, "--shard", "0/2") if a != "--rc"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_rank_never_removes_a_part_another_rank_is_writing(workspace, tmp_path, capsys):
    from senformer.outputs import output_lock

    out = tmp_path / "predict.h5"
    assert main(predict_args(workspace, out, "--shard", "0/2")) == 0
    with output_lock(tmp_path / "predict.h5.shards" / "part-1-of-2.h5"):  # as a running rank holds it
        assert main([a for a in predict_args(workspace, out, "--shard", "0/2") if a != "--rc"]) == 2
        assert "is being written by another run" in capsys.readouterr().err
        assert main(predict_args(workspace, out, "--shard", "1/2")) == 2
        assert "is being written by another run" in capsys.readouterr().err
    assert (tmp_path / "predict.h5.shards" / "part-0-of-2.h5").exists()


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(workspace, single, tmp_path):
    out = tmp_path / "predict.h5"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "senformer", *predict_args(workspace, out)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("wrote part") + result.stdout.count("from 2 parts") == 2
    assert_same_data(single["predict.h5"], out)
    assert time.monotonic() - started < 120


def test_a_part_of_other_genome_bases_is_computed_again(workspace, tmp_path, capsys):
    genome = tmp_path / "genome.fa"
    shutil.copy(workspace / "genome.fa", genome)
    out = tmp_path / "predict.h5"

    def args(*extra):
        return [str(genome) if a == str(workspace / "genome.fa") else a for a in predict_args(workspace, out, *extra)]

    assert main(args("--shard", "0/2")) == 0
    lines = genome.read_text().splitlines(keepends=True)
    genome.write_text("".join(lines[:10] + [line.replace("A", "C") for line in lines[10:20]] + lines[20:]))
    assert main(args("--shard", "1/2")) == 2
    assert "part-0-of-2.h5: region r0 was computed from other bases" in capsys.readouterr().err and not out.exists()
    assert main(args("--shard", "0/2")) == 0
    assert f"wrote {out} from 2 parts" in capsys.readouterr().out
    assert main(args()) == 0 and "is up to date" in capsys.readouterr().out


def test_a_variants_part_of_other_genome_bases_is_computed_again(workspace, tmp_path, capsys):
    genome = tmp_path / "variants.fa"
    shutil.copy(workspace / "variants.fa", genome)
    out = tmp_path / "variants.h5"

    def args(*extra):
        return [str(genome) if a == str(workspace / "variants.fa") else a
                for a in variants_args(workspace, out, *extra)]

    assert main(args("--shard", "0/2")) == 0
    lines = genome.read_text().splitlines(keepends=True)
    line = 1 + 1150 // 60  # bases 1140-1199: inside the first window (snv1 at 1,500), no REF among them
    genome.write_text("".join(lines[:line] + [lines[line].replace("A", "C")] + lines[line + 1 :]))
    assert main(args("--shard", "1/2")) == 2
    assert "part-0-of-2.h5: one of windows 1-" in capsys.readouterr().err and not out.exists()
    assert main(args("--shard", "0/2")) == 0
    assert f"wrote {out} from 2 parts" in capsys.readouterr().out
    assert main(args()) == 0 and "is up to date" in capsys.readouterr().out
