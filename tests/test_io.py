import os

import pytest

from senformer.io import atomic_path, atomic_write_text


def test_atomic_write_renames_only_on_success_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "failed.txt") as temporary:
            temporary.write_text("partial")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_write_json_is_strict_json_of_numpy_paths_dataclasses_and_tuples(tmp_path):
    import dataclasses
    import json
    import math
    from pathlib import Path

    import numpy as np
    import torch

    from senformer.io import write_json

    @dataclasses.dataclass
    class Point:
        name: str
        where: Path

    value = {
        "int": np.int64(7), "float": np.float32(0.5), "nan": float("nan"), "numpy_nan": np.float64("nan"),
        "inf": math.inf, "array": np.array([[1.0, np.nan], [2.0, 3.0]]), "flag": np.bool_(True),
        "path": Path("/data/genome.fa"), "tuple": (1, (2, 3)), "point": Point("a", Path("x/y")),
        "tensor": torch.tensor([1.5, 2.5]), "dtype": torch.float32, 3: "integer key",
    }
    path = write_json(tmp_path / "out" / "values.json", value)
    text = path.read_text()
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "int": 7, "float": 0.5, "nan": None, "numpy_nan": None, "inf": None, "array": [[1.0, None], [2.0, 3.0]],
        "flag": True, "path": "/data/genome.fa", "tuple": [1, [2, 3]], "point": {"name": "a", "where": "x/y"},
        "tensor": [1.5, 2.5], "dtype": "torch.float32", "3": "integer key",
    }


def test_write_json_refuses_unknown_objects_and_keeps_the_previous_file(tmp_path):
    from senformer.io import write_json

    target = tmp_path / "values.json"
    write_json(target, {"kept": 1})
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        write_json(target, {"bad": object()})
    assert target.read_text() == '{\n  "kept": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["values.json"]


def test_write_csv_and_npz_round_trip(tmp_path):
    import numpy as np
    import pandas as pd

    from senformer.io import write_csv, write_npz

    frame = pd.DataFrame({"track": ["a", "b"], "pearson": [0.25, np.nan]})
    write_csv(tmp_path / "table.csv", frame)
    assert (tmp_path / "table.csv").read_text() == "track,pearson\na,0.25\nb,\n"
    write_csv(tmp_path / "table.tsv", frame, sep="\t")
    assert (tmp_path / "table.tsv").read_text().splitlines()[0] == "track\tpearson"
    scores = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_npz(tmp_path / "scores.npz", scores=scores, index=np.array([4, 9]))
    with np.load(tmp_path / "scores.npz") as loaded:
        assert sorted(loaded.files) == ["index", "scores"]
        np.testing.assert_array_equal(loaded["scores"], scores)
        assert loaded["scores"].dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.npz", "table.csv", "table.tsv"]


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from senformer.io import save_figure

    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    number = figure.number
    save_figure(tmp_path / "plot.png", figure, dpi=50)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(number)
    figure, _ = plt.subplots()
    save_figure(tmp_path / "plot.svg", figure)
    assert b"<svg" in (tmp_path / "plot.svg").read_bytes()[:500]


# One writer per output ----------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder_and_the_lock_is_removed_after(tmp_path):
    import socket

    from senformer.errors import UserError
    from senformer.io import output_lock

    out = tmp_path / "predictions.h5"
    with output_lock(out) as lock:
        assert lock == tmp_path / "predictions.h5.lock"
        assert lock.read_text() == f"host {socket.gethostname()} pid {os.getpid()}\n"
        with pytest.raises(UserError, match=rf"predictions.h5 is being written by another run \(pid {os.getpid()} "
                                            rf"on host {socket.gethostname()}, lock .*predictions.h5.lock\)") as error:
            with output_lock(out):
                pass
        assert "\n" not in str(error.value)
    assert not lock.exists()
    with output_lock(out):  # free again
        assert lock.exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    import signal
    import subprocess
    import sys

    from senformer.errors import UserError
    from senformer.io import output_lock

    out = tmp_path / "scores.tsv"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom senformer.io import output_lock\n"
         f"with output_lock({str(out)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"pid {holder.pid} on host"):
            with output_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "scores.tsv.lock").exists()  # left behind by kill -9, but not locked
    with output_lock(out):
        pass


# Existing outputs ---------------------------------------------------------------------------------
def _finished_file(out, fingerprint):
    from senformer.io import FILE, finish_output, plan_output, start_partial

    plan = plan_output(out, FILE, fingerprint)
    start_partial(plan, {"command": "test"})
    plan.partial.write_text(f"rows of {fingerprint}\n")
    return finish_output(plan, {"command": "test"})


def test_a_complete_output_with_the_same_inputs_is_up_to_date_and_another_is_refused(tmp_path):
    import json

    from senformer.errors import UserError
    from senformer.fingerprint import value_digest as fingerprint
    from senformer.io import FILE, finish_output, plan_output, start_partial

    out = tmp_path / "scores.tsv"
    first, second = fingerprint({"vcf": "a"}), fingerprint({"vcf": "b"})
    assert first == fingerprint({"vcf": "a"}) != second
    _finished_file(out, first)
    assert out.read_text() == f"rows of {first}\n"
    assert json.loads((tmp_path / "scores.tsv.run.json").read_text())["fingerprint"] == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.tsv", "scores.tsv.run.json"]
    assert plan_output(out, FILE, first).up_to_date
    with pytest.raises(UserError, match=r"scores.tsv was written from other inputs \(fingerprint .*\); pass --overwrite"):
        plan_output(out, FILE, second)
    plan = plan_output(out, FILE, second, overwrite=True)
    assert plan.action == "write"
    start_partial(plan, {"command": "test"})
    plan.partial.write_text(f"rows of {second}\n")
    assert out.read_text() == f"rows of {first}\n"  # the old result stays until the new one is complete
    finish_output(plan, {"command": "test"})
    assert out.read_text() == f"rows of {second}\n" and plan_output(out, FILE, second).up_to_date
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.tsv", "scores.tsv.run.json"]


def test_an_output_without_a_record_or_of_the_wrong_kind_needs_overwrite(tmp_path):
    from senformer.errors import UserError
    from senformer.io import DIRECTORY, FILE, finish_output, plan_output, start_partial

    foreign = tmp_path / "table.csv"
    foreign.write_text("someone else's\n")
    with pytest.raises(UserError, match="table.csv exists without a run record; pass --overwrite"):
        plan_output(foreign, FILE, "f1")
    assert plan_output(foreign, FILE, "f1", overwrite=True).action == "write"
    with pytest.raises(UserError, match=r"table.csv is a file, but a directory is due there; pass --overwrite"):
        plan_output(foreign, DIRECTORY, "f1")
    plan = plan_output(foreign, DIRECTORY, "f1", overwrite=True)
    (start_partial(plan, {}) / "metrics.json").write_text("{}")
    finish_output(plan, {})
    assert sorted(p.name for p in foreign.iterdir()) == ["metrics.json", "run.json"]
    assert plan_output(foreign, DIRECTORY, "f1").up_to_date

    mine = tmp_path / "results"
    mine.mkdir()
    assert plan_output(mine, DIRECTORY, "f1").action == "write"  # an empty directory is as good as none
    (mine / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="results is a directory that senformer did not write"):
            plan_output(mine, DIRECTORY, "f1", overwrite=overwrite)
        with pytest.raises(UserError, match="results is a directory that senformer did not write"):
            plan_output(mine, FILE, "f1", overwrite=overwrite)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_partial_output_resumes_with_the_same_inputs_and_is_replaced_with_others(tmp_path):
    from senformer.io import DIRECTORY, FILE, finish_output, plan_output, start_partial

    out = tmp_path / "predictions.h5"
    plan = plan_output(out, FILE, "inputs-a")
    start_partial(plan, {"command": "predict"})
    plan.partial.write_text("half")
    again = plan_output(out, FILE, "inputs-a")
    assert again.resume and again.partial == tmp_path / "predictions.h5.partial" and again.notice is None
    other = plan_output(out, FILE, "inputs-b")
    assert other.action == "write" and not other.partial.exists()
    assert other.notice == f"{other.partial} was written from other inputs: starting it again"
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    out_dir = tmp_path / "analysis"
    plan = plan_output(out_dir, DIRECTORY, "inputs-a")
    (start_partial(plan, {}) / "table.csv").write_text("a\n")
    assert plan_output(out_dir, DIRECTORY, "inputs-a").resume
    finish_output(plan, {"command": "analyze"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis"]
    replacement = plan_output(out_dir, DIRECTORY, "inputs-b", overwrite=True)
    (start_partial(replacement, {}) / "table.csv").write_text("b\n")
    assert (out_dir / "table.csv").read_text() == "a\n"  # the old result stays until the new one is complete
    finish_output(replacement, {})
    assert (out_dir / "table.csv").read_text() == "b\n" and plan_output(out_dir, DIRECTORY, "inputs-b").up_to_date
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis"]


def test_an_interrupted_replacement_never_looks_up_to_date(tmp_path, monkeypatch):
    from senformer.io import FILE, finish_output, plan_output, start_partial

    out = tmp_path / "scores.tsv"
    _finished_file(out, "old")
    plan = plan_output(out, FILE, "new", overwrite=True)
    start_partial(plan, {})
    plan.partial.write_text("rows of new\n")
    real_replace = os.replace

    def killed(source, target):
        raise KeyboardInterrupt  # the process dies between removing the old record and moving the new file

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        finish_output(plan, {})
    monkeypatch.setattr(os, "replace", real_replace)
    assert out.read_text() == "rows of old\n"
    assert not plan_output(out, FILE, "new", overwrite=True).up_to_date
    from senformer.errors import UserError

    with pytest.raises(UserError, match="exists without a run record"):
        plan_output(out, FILE, "old")
