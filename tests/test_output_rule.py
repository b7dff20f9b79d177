"""The existing-output rule, the lock and the one-line refusals, for every command that writes results.

One complete output per command is computed once (module fixture); each case copies it and changes what the
case is about (its recorded fingerprint, its place as ``OUT.partial``, a lock held by this test process), so
most cases run no model at all. A case that must refuse before the model is loaded runs with
``senformer.weights.load_model`` replaced by a function that fails the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import tiny_model

import senformer.weights
from senformer import save_model
from senformer.cli import main
from senformer.outputs import DIRECTORY, FILE, output_lock, partial_path, record_path

OTHER = "0" * 64  # a fingerprint no run computes


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from senformer.data.genome import Genome
    from senformer.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("rule")
    data = make_synthetic(root / "data", size="tiny", seed=0, train=2, valid=1, test=2)
    statistics = json.loads((data / "statistics.json").read_text())
    heads = {"human": statistics["num_targets"]}
    for name, seed in (("a", 1), ("b", 2)):
        save_model(tiny_model(seed=seed, target_length=statistics["target_length"], output_heads=heads), root / name)
    sizes = dict(Genome(data / "genome.fa").sizes)
    chrom, size = next(iter(sizes.items()))
    pybigtools = pytest.importorskip("pybigtools")
    pybigtools.open(str(root / "signal.bw"), "w").write(sizes, [(chrom, 100, 900, 2.0)])
    return {"root": root, "data": data, "length": statistics["seq_length"], "chrom": chrom,
            "region": f"{chrom}:{size // 2}-{size // 2 + 100}"}


def _commands(w) -> dict[str, tuple[str, list[str]]]:
    """name -> (kind, argv without --out); each argv computes in about a second."""
    root, data, length = w["root"], w["data"], str(w["length"])
    a, b = str(root / "a"), str(root / "b")
    quiet = ["--no-progress"]
    return {
        "predict": (FILE, ["predict", "--weights", a, "--fasta", str(data / "genome.fa"), "--region", w["region"],
                           "--length", length, *quiet]),
        "evaluate": (DIRECTORY, ["evaluate", "--data", str(data), "--weights", a, "--max-examples", "2", *quiet]),
        "analyze compare": (DIRECTORY, ["analyze", "compare", "--data", str(data), "--weights", f"x={a}",
                                        "--weights", f"y={b}", "--max-examples", "2", *quiet]),
        "analyze tracks": (DIRECTORY, ["analyze", "tracks", "--data", str(data), "--weights", a, "--examples", "0",
                                       "--max-examples", "2", *quiet]),
        "analyze receptive-field": (DIRECTORY, ["analyze", "receptive-field", "--weights", a, "--length", length,
                                                "--sequences", "1", "--positions", "2", *quiet]),
        "analyze attribution": (DIRECTORY, ["analyze", "attribution", "--weights", a, "--data", str(data),
                                            "--example", "0", "--ism-width", "2", *quiet]),
        "data synthetic": (DIRECTORY, ["data", "synthetic", "--size", "tiny", "--train", "1", "--valid", "1",
                                       "--test", "1"]),
        "data from-bigwig": (DIRECTORY, ["data", "from-bigwig", "--genome", str(data / "genome.fa"), "--bigwig",
                                         f"sig={root / 'signal.bw'}", "--chroms", w["chrom"],
                                         "--seq-length", "1024", "--crop-bp", "256"]),
    }


COMMANDS = ["predict", "evaluate", "analyze compare", "analyze tracks", "analyze receptive-field",
            "analyze attribution", "data synthetic", "data from-bigwig"]


def _argv(argv: list[str], out: Path) -> list[str]:
    if argv[0] == "data":
        return [*argv[:2], str(out), *argv[2:]]
    return [*argv, "--out", str(out)]


@pytest.fixture(scope="module")
def complete(workspace):
    """name -> a complete output of that command (never changed by the tests: they copy it)."""
    outputs = {}
    for name, (kind, argv) in _commands(workspace).items():
        out = workspace["root"] / "complete" / name.replace(" ", "_") / ("out.h5" if kind == FILE else "out")
        assert main(_argv(argv, out)) == 0
        outputs[name] = out
    return outputs


def _copy(source: Path, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination)
    else:
        shutil.copy2(source, destination)
        shutil.copy2(record_path(source, FILE), record_path(destination, FILE))
    return destination


def _set_fingerprint(out: Path, kind: str, fingerprint: str) -> None:
    path = record_path(out, kind)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "fingerprint": fingerprint}))


def _move_to_partial(out: Path, kind: str) -> Path:
    partial = partial_path(out)
    out.rename(partial)
    if kind == FILE:
        record_path(out, FILE).rename(record_path(partial, FILE))
    return partial


@pytest.fixture
def no_model_loaded(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(senformer.weights, "load_model", refuse)


def _one_line(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0, error
    return error


@pytest.mark.parametrize("name", COMMANDS)
def test_a_complete_output_of_the_same_inputs_is_up_to_date(workspace, complete, tmp_path, name, capsys,
                                                             no_model_loaded):
    kind, argv = _commands(workspace)[name]
    out = _copy(complete[name], tmp_path / complete[name].name)
    before = record_path(out, kind).read_text()
    assert main(_argv(argv, out)) == 0
    assert capsys.readouterr().out.strip() == f"{out} is up to date"
    assert record_path(out, kind).read_text() == before


@pytest.mark.parametrize("name", COMMANDS)
def test_an_output_of_other_inputs_is_refused_unless_overwrite(workspace, complete, tmp_path, name, capsys,
                                                               monkeypatch):
    kind, argv = _commands(workspace)[name]
    out = _copy(complete[name], tmp_path / complete[name].name)
    _set_fingerprint(out, kind, OTHER)
    load_model = senformer.weights.load_model
    monkeypatch.setattr(senformer.weights, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert main(_argv(argv, out)) == 2
    error = _one_line(capsys)
    assert f"{out} was written from other inputs" in error and "pass --overwrite" in error
    assert json.loads(record_path(out, kind).read_text())["fingerprint"] == OTHER
    monkeypatch.setattr(senformer.weights, "load_model", load_model)
    assert main([*_argv(argv, out), "--overwrite"]) == 0
    assert json.loads(record_path(out, kind).read_text())["fingerprint"] == \
        json.loads(record_path(complete[name], kind).read_text())["fingerprint"]
    assert not partial_path(out).exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_a_path_of_the_wrong_kind_is_refused(workspace, tmp_path, name, capsys, no_model_loaded):
    kind, argv = _commands(workspace)[name]
    out = tmp_path / "out"
    if kind == FILE:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    else:
        out.write_text("mine")
    assert main(_argv(argv, out)) == 2
    error = _one_line(capsys)
    assert str(out) in error and ("a file is due" in error or "a directory is due" in error
                                  or "senformer did not write" in error)
    assert (out / "keep.txt" if kind == FILE else out).read_text() == "mine"


@pytest.mark.parametrize("name", COMMANDS)
def test_a_second_writer_is_refused_naming_the_holder_and_deletes_nothing(workspace, tmp_path, name, capsys,
                                                                          no_model_loaded):
    import os

    kind, argv = _commands(workspace)[name]
    out = tmp_path / ("out.h5" if kind == FILE else "out")
    partial = partial_path(out)
    if kind == FILE:
        partial.write_text("the other run's rows")
    else:
        partial.mkdir()
        (partial / "rows.txt").write_text("the other run's rows")
    with output_lock(out):
        assert main(_argv(argv, out)) == 2
    error = _one_line(capsys)
    assert "is being written by another run" in error and f"pid {os.getpid()}" in error
    assert (partial if kind == FILE else partial / "rows.txt").read_text() == "the other run's rows"


@pytest.mark.parametrize("name", COMMANDS)
def test_a_partial_output_of_the_same_inputs_is_resumed(workspace, complete, tmp_path, name, capsys):
    kind, argv = _commands(workspace)[name]
    out = tmp_path / complete[name].name
    _move_to_partial(_copy(complete[name], out), kind)
    assert main(_argv(argv, out)) == 0
    captured = capsys.readouterr()
    assert "starting it again" not in captured.err
    assert out.exists() and not partial_path(out).exists()
    assert recorded(out, kind) == recorded(complete[name], kind)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_partial_output_of_other_inputs_is_replaced_with_a_notice(workspace, complete, tmp_path, name, capsys):
    kind, argv = _commands(workspace)[name]
    out = tmp_path / complete[name].name
    partial = _move_to_partial(_copy(complete[name], out), kind)
    _set_fingerprint(partial, kind, OTHER)
    assert main(_argv(argv, out)) == 0
    notice = [line for line in capsys.readouterr().err.splitlines() if "starting it again" in line]
    assert notice == [f"senformer {name}: {partial} was written from other inputs: starting it again"]
    assert recorded(out, kind) == recorded(complete[name], kind)


def recorded(out: Path, kind: str) -> str:
    return json.loads(record_path(out, kind).read_text())["fingerprint"]


# Bounds and devices: one line, exit 2, before anything is computed ------------------------------------------
@pytest.mark.parametrize("name", ["predict", "evaluate", "analyze tracks", "analyze receptive-field",
                                  "analyze attribution"])
@pytest.mark.parametrize("device, message", [("gpu0", "device 'gpu0' is not one of"),
                                             ("cuda:7", "device 'cuda:7'")])
def test_a_device_that_is_not_there_is_one_line(workspace, tmp_path, name, device, message, capsys,
                                                no_model_loaded):
    _, argv = _commands(workspace)[name]
    assert main([*_argv(argv, tmp_path / "out"), "--device", device]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "out").exists() and not partial_path(tmp_path / "out").exists()


def test_shifts_beyond_half_a_bin_are_refused(workspace, tmp_path, capsys, no_model_loaded):
    _, argv = _commands(workspace)["predict"]
    assert main([*_argv(argv, tmp_path / "out.h5"), "--shifts=100000"]) == 2
    assert "shift 100000 bp is more than half a bin (64 bp)" in _one_line(capsys)
    assert main([*_argv(argv, tmp_path / "out.h5"), "--shifts=-65,0"]) == 2
    assert "shift -65 bp" in _one_line(capsys)


def test_an_ism_window_wider_than_the_input_is_refused(workspace, tmp_path, capsys):
    _, argv = _commands(workspace)["analyze attribution"]
    argv = [value if value != "2" else str(workspace["length"] + 1) for value in argv]  # the --ism-width
    assert main(_argv(argv, tmp_path / "out")) == 2
    assert f"ISM width {workspace['length'] + 1:,} bp does not fit the {workspace['length']:,} bp input" in \
        _one_line(capsys)
    assert not (tmp_path / "out").exists() and not partial_path(tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["predict", "--weights", "w"],
    ["analyze", "tracks", "--weights", "w", "--data", "d", "--out", "o", "--bogus"],
    ["data", "synthetic"],
    ["evaluate", "--data", "d", "--weights", "w", "--out", "o", "--batch-size", "two"],
    ["nonsense"],
], ids=["missing-option", "unknown-option", "missing-positional", "bad-integer", "unknown-command"])
def test_argument_errors_are_one_line_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = _one_line(capsys)
    assert error.startswith("senformer") and ": error: " in error and "usage" not in error


@pytest.mark.parametrize("name", ["analyze receptive-field", "analyze attribution"])
def test_non_finite_scores_never_make_a_finished_output(workspace, tmp_path, name, capsys):
    """A model whose outputs overflow (a head bias of 3e38 plus anything is infinite in float32)."""
    import torch

    from senformer import load_model

    model = load_model(workspace["root"] / "a")
    with torch.no_grad():
        model.heads["human"].bias.fill_(3e38)
        model.heads["human"].weight.fill_(1e38)
    save_model(model, tmp_path / "overflowing")
    _, argv = _commands(workspace)[name]
    argv = [str(tmp_path / "overflowing") if value == str(workspace["root"] / "a") else value for value in argv]
    assert main(_argv(argv, tmp_path / "out")) == 2
    error = _one_line(capsys)
    assert "is not finite" in error
    assert ("test example 0" if "attribution" in name else "random sequences (seed 0)") in error, error
    assert not (tmp_path / "out").exists()
