import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import senformer
from senformer.outputs.rule import DIRECTORY, FILE, record_path, write_record
from senformer.record import git_commit, machine_info, run_record

REPOSITORY = Path(__file__).resolve().parents[1]


def test_machine_info_names_versions_cpu_and_threads():
    import numpy as np

    info = machine_info()
    assert info["torch"] == torch.__version__ and info["numpy"] == np.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["threads"] == torch.get_num_threads() and info["cpu_count"] >= 1 and info["cpu"]
    assert ("gpu" in info) == torch.cuda.is_available()


def test_git_commit_reads_the_checkout_like_git_does():
    expected = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True)
    package = Path(senformer.__file__).resolve().parent
    if expected.returncode != 0 or package != REPOSITORY / "src" / "senformer":
        pytest.skip("the suite runs outside a git checkout of this package")
    assert git_commit() == expected.stdout.strip()


def test_git_commit_is_none_outside_a_checkout_and_follows_packed_refs(tmp_path):
    assert git_commit(tmp_path / "site-packages" / "senformer") is None
    commit = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "src" / "senformer").mkdir(parents=True)
    (tmp_path / "repo" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "repo" / ".git" / "packed-refs").write_text(f"# pack-refs\n{commit} refs/heads/main\n")
    assert git_commit(tmp_path / "repo" / "src" / "senformer") == commit
    # A package directory that is not the checkout's source tree (say, inside a venv) is not this checkout.
    assert git_commit(tmp_path / "repo" / ".venv" / "lib" / "senformer") is None


def test_run_record_is_written_as_strict_json(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["senformer", "predict", "--out", "x.h5"])
    record = run_record("predict", {"length": 196_608, "out": tmp_path / "x.h5", "shifts": (0, 1)},
                        inputs={"genome": "sha256:abc"}, device=torch.device("cpu"), fingerprint="f" * 64)
    assert record["senformer"]["version"] == senformer.__version__
    assert record["argv"] == ["senformer", "predict", "--out", "x.h5"]
    assert record["settings"] == {"length": 196_608, "out": str(tmp_path / "x.h5"), "shifts": [0, 1]}
    assert record["inputs"] == {"genome": "sha256:abc"} and record["fingerprint"] == "f" * 64
    assert record["device"] == "cpu" and record["threads"] == torch.get_num_threads()
    assert record["format_version"] == 1 and record["torch"] == torch.__version__
    written = write_record(record_path(tmp_path, DIRECTORY), record)
    assert written == tmp_path / "run.json"
    assert json.loads(written.read_text()) == record
    assert write_record(record_path(tmp_path / "x.h5", FILE), record) == tmp_path / "x.h5.run.json"
