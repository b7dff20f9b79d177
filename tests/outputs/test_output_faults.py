"""Faults while writing end cleanly: a real small file system that fills up, a read-only one, a dying HDF5 file,
and SIGKILL at seeded write points. Each ends in one line naming the file and what was being written (exit
2); the partial output stays resumable, nothing incomplete appears at the final path, and an existing good
output is untouched.

The small file system is a tmpfs mounted by the test (root only, as in CI); elsewhere those tests skip with
the reason. HDF5's own C writer is what failed before (a full disk made it swallow write errors, rename a
NaN-filled partial into place and crash): only a real device that fills up reaches it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import run_killed_at, seeded_kill_point, tiny_model, training_killed_and_resumed, write_random_chromosome

from senformer import save_model
from senformer.cli import main
from senformer.errors import UserError

VARIANTS = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "variants"
PAGE = 4096


@pytest.fixture
def small_disk(tmp_path):
    """``make(bytes) -> folder`` on a tmpfs of that size (whole pages); ``resize(folder, bytes)``,
    ``read_only(folder)``. Unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs these tests as root)")
    mounted: list[Path] = []

    def mount(folder: Path, options: str) -> None:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                                text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")

    class Disk:
        @staticmethod
        def make(size: int) -> Path:
            folder = tmp_path / f"disk{len(mounted)}"
            folder.mkdir()
            mount(folder, f"size={-(-size // PAGE) * PAGE}")
            mounted.append(folder)
            return folder

        @staticmethod
        def resize(folder: Path, size: int) -> None:
            subprocess.run(["mount", "-o", f"remount,size={-(-size // PAGE) * PAGE}", str(folder)], check=True)

        @staticmethod
        def read_only(folder: Path) -> None:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)

    yield Disk
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    write_random_chromosome(root / "genome.fa", 40_000, seed=2)
    (root / "regions.bed").write_text("".join(f"chr1\t{1000 + 300 * i}\t{1100 + 300 * i}\tr{i}\n"
                                              for i in range(24)))
    (root / "few.bed").write_text("".join(f"chr1\t{1000 + 3000 * i}\t{1100 + 3000 * i + 900 * (i == 2)}\tr{i}\n"
                                          for i in range(5)))
    save_model(tiny_model(seed=3), root / "model")
    shutil.copy(VARIANTS / "genome.fa", root / "variants.fa")
    return root


def predict_args(w, out, *extra):
    return ["predict", "--weights", str(w / "model"), "--fasta", str(w / "genome.fa"), "--regions",
            str(w / "regions.bed"), "--length", "1024", "--embeddings", "--no-progress", "--out", str(out), *extra]


def variants_args(w, out, *extra):
    return ["analyze", "variants", "--weights", str(w / "model"), "--fasta", str(w / "variants.fa"), "--vcf",
            str(VARIANTS / "variants.vcf.gz"), "--length", "1024", "--allow-ref-mismatch", "--no-progress",
            "--out", str(out), *extra]


def datasets(path: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, item[...].tobytes())
                          if isinstance(item, h5py.Dataset) and item.dtype.kind != "O" else None)
    return found


@pytest.fixture(scope="module")
def reference(workspace):
    """The predict output written on an ordinary disk, and its size."""
    out = workspace / "reference" / "p.h5"
    assert main(predict_args(workspace, out)) == 0
    return out


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_predict_on_a_disk_that_fills_up_ends_in_one_line_and_resumes(workspace, reference, small_disk, capsys):
    disk = small_disk.make(reference.stat().st_size * 3 // 4 + 2 * PAGE)  # the record, the lock, some rows
    out = disk / "p.h5"
    assert main(predict_args(workspace, out)) == 2
    line = one_line(capsys)
    assert line.startswith(f"senformer predict: error: {out}.partial: cannot write ") and "no space left" in line
    assert not out.exists() and Path(f"{out}.partial").exists()
    with h5py.File(f"{out}.partial", "r") as handle:
        kept = int(handle.attrs["completed"])
    assert 0 < kept < 24  # rows on the device before the disk filled; a rerun keeps them
    small_disk.resize(disk, 4 * reference.stat().st_size)
    assert main(predict_args(workspace, out)) == 0
    assert datasets(out) == datasets(reference)


def test_an_overwrite_on_a_full_disk_leaves_the_good_output_as_it_was(workspace, reference, small_disk, capsys):
    disk = small_disk.make(reference.stat().st_size * 3 // 2)
    out = disk / "p.h5"
    shutil.copy(reference, out)
    shutil.copy(f"{reference}.run.json", f"{out}.run.json")
    before = out.read_bytes(), Path(f"{out}.run.json").read_bytes()
    assert main(predict_args(workspace, out, "--rc", "--overwrite")) == 2
    assert "no space left" in one_line(capsys)
    assert (out.read_bytes(), Path(f"{out}.run.json").read_bytes()) == before


def test_predict_onto_a_read_only_file_system_is_one_line(workspace, small_disk, capsys):
    disk = small_disk.make(1 << 20)
    small_disk.read_only(disk)
    assert main(predict_args(workspace, disk / "p.h5")) == 2
    assert "read-only file system" in one_line(capsys)


@pytest.mark.parametrize("suffix", [".h5", ".tsv.gz"])
def test_variants_on_a_disk_that_fills_up_end_in_one_line(workspace, small_disk, tmp_path, capsys, suffix):
    reference = tmp_path / f"reference{suffix}"
    assert main(variants_args(workspace, reference)) == 0
    capsys.readouterr()
    disk = small_disk.make(2 * PAGE)  # the lock and the partial's record fit; the scores do not
    out = disk / f"scores{suffix}"
    assert main(variants_args(workspace, out)) == 2
    line = one_line(capsys)
    assert f"{out}" in line and "cannot write" in line and "no space left" in line
    assert not out.exists()
    small_disk.resize(disk, 1 << 20)
    assert main(variants_args(workspace, out)) == 0
    if suffix == ".h5":
        assert datasets(out) == datasets(reference)
    else:
        assert out.read_bytes() == reference.read_bytes()


def test_evaluate_on_a_full_disk_ends_in_one_line(small_disk, tmp_path, capsys):
    from senformer.data.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "data", size="tiny", seed=0, train=1, valid=1, test=2)
    statistics = json.loads((data / "statistics.json").read_text())
    save_model(tiny_model(seed=1, target_length=statistics["target_length"],
                          output_heads={"human": statistics["num_targets"]}), tmp_path / "model")
    disk = small_disk.make(3 * PAGE)
    out = disk / "evaluation"
    assert main(["evaluate", "--data", str(data), "--weights", str(tmp_path / "model"), "--max-examples", "2",
                 "--no-progress", "--out", str(out)]) == 2
    line = one_line(capsys)
    assert "cannot write" in line and "no space left" in line and not out.exists()


def test_a_checkpoint_on_a_full_disk_ends_in_one_line_and_the_last_one_stays(small_disk, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    from train_support import head_data, tiny_settings

    from senformer.train import run_training
    from senformer.train.checkpoint import load_checkpoint

    probe = tmp_path / "probe"
    run_training(tiny_settings(steps=2, checkpoint_every=2, keep_checkpoints=2), probe, data=head_data())
    size = sum(p.stat().st_size for p in probe.rglob("*") if p.is_file())
    disk = small_disk.make(size + 2 * PAGE)  # one checkpoint and the run's other files, not a second one
    run = disk / "run"
    with pytest.raises(UserError, match=r"cannot write the checkpoint of step 4 \(no space left"):
        run_training(tiny_settings(steps=4, checkpoint_every=2, keep_checkpoints=2), run, data=head_data())
    assert load_checkpoint(run / "checkpoints" / "step-00000002.pt")["step"] == 2
    assert not list((run / "checkpoints").glob(".*partial"))


def test_a_dying_hdf5_file_is_one_line_and_nothing_reaches_the_output(workspace, tmp_path, monkeypatch, capsys):
    from senformer.outputs import faults

    class Dying:
        """The device of a file: after 40 writes every write fails with EIO, as when a disk goes away."""

        def __init__(self, file):
            self.file, self.writes = file, 0

        def write(self, data):
            self.writes += 1
            if self.writes > 40:
                raise OSError(errno.EIO, "Input/output error")
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

    real_init = faults.GuardedFile.__init__

    def dying_init(self, path, mode):
        real_init(self, path, mode)
        self.file = Dying(self.file)

    monkeypatch.setattr(faults.GuardedFile, "__init__", dying_init)
    out = tmp_path / "p.h5"
    assert main(predict_args(workspace, out)) == 2
    line = one_line(capsys)
    assert "input/output error" in line and "cannot write" in line and not out.exists()


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_predict_killed_at_a_seeded_write_resumes_to_the_same_bytes(workspace, tmp_path, seed):
    def few(out):  # five regions, one of them two windows long, in batches of two
        return [a if a != str(workspace / "regions.bed") else str(workspace / "few.bed")
                for a in predict_args(workspace, out, "--batch-size", "2")]

    reference = tmp_path / "reference.h5"
    kill_at = seeded_kill_point(seed, few(reference))
    out = tmp_path / "p.h5"
    code, _, stderr = run_killed_at(few(out), kill_at)
    assert code == -signal.SIGKILL, stderr
    assert not out.exists() or Path(f"{out}.run.json").exists()  # OUT appears only with its record
    assert main(few(out)) == 0
    assert datasets(out) == datasets(reference)


@pytest.mark.slow
def test_variants_killed_at_a_seeded_write_finish_on_rerun(workspace, tmp_path):
    out = tmp_path / "scores.h5"
    kill_at = seeded_kill_point(7, variants_args(workspace, tmp_path / "count.h5"))
    code, _, stderr = run_killed_at(variants_args(workspace, out), kill_at)
    assert code == -signal.SIGKILL, stderr
    assert not out.exists()
    assert subprocess.run([sys.executable, "-m", "senformer", *variants_args(workspace, out)],
                          capture_output=True).returncode == 0
    assert np.isfinite(h5py.File(out, "r")["scores/SAD"][:][:9]).any()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from senformer.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("evaluate")
    data = make_synthetic(root / "data", size="tiny", seed=0, train=2, valid=1, test=2)
    statistics = json.loads((data / "statistics.json").read_text())
    save_model(tiny_model(seed=1, target_length=statistics["target_length"],
                          output_heads={"human": statistics["num_targets"]}), root / "model")
    return root


def evaluate_args(root, out):
    return ["evaluate", "--data", str(root / "data"), "--weights", str(root / "model"), "--max-examples", "2",
            "--no-progress", "--out", str(out)]


@pytest.mark.parametrize("seed", [3, pytest.param(4, marks=pytest.mark.slow)])
def test_evaluate_killed_at_a_seeded_write_leaves_nothing_half_done(dataset, tmp_path, seed):
    reference = tmp_path / "reference"
    kill_at = seeded_kill_point(seed, evaluate_args(dataset, reference))
    out = tmp_path / "evaluation"
    code, _, stderr = run_killed_at(evaluate_args(dataset, out), kill_at)
    assert code == -signal.SIGKILL, stderr
    # killed before the final rename nothing is at OUT; after it OUT is complete with its record
    assert not out.exists() or (out / "run.json").is_file()
    assert main(evaluate_args(dataset, out)) == 0
    for name in ("per_track.csv", "per_assay.csv"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()


@pytest.mark.slow
def test_training_killed_at_a_seeded_write_resumes_from_whole_checkpoints(dataset, tmp_path):
    statistics = json.loads((dataset / "data" / "statistics.json").read_text())
    tiny = ["--set", "dim=48", "--set", "depth=1", "--set", "heads=2", "--set", "key_size=8", "--set",
            "conv_tower_divisible_by=8", "--set", "block_size=4", "--set",
            f"target_length={statistics['target_length']}", "--set",
            f'output_heads={{"human": {statistics["num_targets"]}}}', "--steps", "4",
            "--batch-size", "2", "--checkpoint-every", "1", "--eval-every", "0", "--warmup-steps", "1",
            "--no-progress", "--data", str(dataset / "data")]
    out = training_killed_and_resumed(tiny, tmp_path, 5)
    from senformer.train.checkpoint import list_checkpoints, load_checkpoint

    # every checkpoint left is whole (a killed save leaves only a temporary file, removed under the lock)
    assert [load_checkpoint(path)["step"] for path in list_checkpoints(out / "checkpoints")][-1] == 4
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert (out / "weights" / "model.safetensors").is_file() and (out / "run.json").is_file()
