"""Every numeric option of every subcommand, walked through argparse's own tables: each states its range
(:class:`senformer.commands.options.Bounded`), and 0, -1 and a huge value (NaN and infinity for reals) end
in one line and exit 2, or run; never a traceback."""

from __future__ import annotations

import argparse

import pytest

from senformer.cli import build_parser, main
from senformer.commands.options import Bounded, WholeList

HUGE_WHOLE, HUGE_REAL = 10**18, 1e308


def numeric_options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(subcommand path, action) of every option whose ``type`` converts text to numbers, at every level."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from numeric_options(child, (*path, name))
        elif action.type in (int, float) or isinstance(action.type, (Bounded, WholeList)):
            yield path, action


OPTIONS = list(numeric_options(build_parser()))


def trial_values(action) -> tuple[str, ...]:
    kind = getattr(getattr(action.type, "item", action.type), "kind", action.type)
    return ("0", "-1", str(HUGE_WHOLE)) + (() if kind is int else (str(HUGE_REAL), "nan", "inf"))


CASES = [(path, action, value) for path, action in OPTIONS for value in trial_values(action)]


def label(path, action) -> str:
    return " ".join((*path, action.option_strings[0] if action.option_strings else action.dest))


def accepted(action, text: str) -> bool:
    try:
        action.type(text)
    except argparse.ArgumentTypeError:
        return False
    return True


def test_the_walk_finds_the_options_the_issue_named():
    found = {label(path, action) for path, action in OPTIONS}
    assert {"analyze attribution --bins", "plot --width", "train --lr", "predict --shifts",
            "benchmark scaling --lengths", "data synthetic --long-range"} <= found
    assert len(OPTIONS) > 80


@pytest.mark.parametrize("path, action", OPTIONS, ids=[label(p, a) for p, a in OPTIONS])
def test_every_numeric_option_states_its_range(path, action):
    assert isinstance(action.type, (Bounded, WholeList)), f"{label(path, action)}: type={action.type!r}, not a range"


@pytest.mark.parametrize("path, action, value", [case for case in CASES if not accepted(case[1], case[2])],
                         ids=[f"{label(p, a)}={v}" for p, a, v in CASES if not accepted(a, v)])
def test_an_out_of_range_value_is_one_line_and_exit_2(path, action, value, capsys):
    count = action.nargs if isinstance(action.nargs, int) else 1
    with pytest.raises(SystemExit) as exited:
        main([*path, action.option_strings[0], *[value] * count])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert action.option_strings[0] in err and value in err, err


# Values in range that are not the default: the command runs on tiny real inputs -------------------------
TINY_MODEL = ["--set", "dim=48", "--set", "depth=1", "--set", "heads=2", "--set", "key_size=8",
              "--set", "conv_tower_divisible_by=8", "--set", 'output_heads={"human": 8}', "--set", "target_length=16",
              "--set", "block_size=4"]


def invocation(path: tuple[str, ...], space: dict, out) -> list[str] | None:
    """A minimal valid command line of ``path`` on the workspace's tiny inputs, or None."""
    model, data, fasta, region = space["model"], space["data"], space["fasta"], space["region"]
    return {
        ("predict",): ["predict", "--weights", model, "--fasta", fasta, "--region", region, "--length", "4096",
                       "--out", f"{out}/p.h5", "--no-progress"],
        ("data", "synthetic"): ["data", "synthetic", f"{out}/d"],
        ("train",): ["train", *TINY_MODEL, "--data", data, "--steps", "1", "--out", f"{out}/run", "--no-progress"],
        ("analyze", "compare"): ["analyze", "compare", "--data", data, "--weights", f"x={model}",
                                 "--weights", f"y={model}", "--out", out, "--no-progress"],
        ("analyze", "receptive-field"): ["analyze", "receptive-field", "--weights", model, "--length", "4096",
                                         "--sequences", "1", "--positions", "2", "--out", out, "--no-progress"],
        ("analyze", "attribution"): ["analyze", "attribution", "--weights", model, "--data", data, "--example", "1",
                                     "--ism-width", "2", "--out", out, "--no-progress"],
        ("analyze", "variants"): ["analyze", "variants", "--weights", model, "--fasta", fasta, "--vcf", space["vcf"],
                                  "--anchors", space["anchors"], "--length", "4096", "--out", f"{out}/v.tsv", "--no-progress"],
    }.get(path)


# Measured in subprocesses (minutes) or from bigWig files; their 0 is what the benchmarks' own tests use.
NOT_RUN = {"benchmark scaling --warmup", "benchmark variants --cluster-bp", "data from-bigwig --crop-bp"}


def _is_default(action, value) -> bool:
    default = action.default
    if isinstance(default, (list, tuple)):
        return list(default) == [value] * len(default) if len(default) == 1 else False
    return default == value


IN_RANGE = [(path, action, value) for path, action, value in CASES
            if accepted(action, value) and not _is_default(action, action.type(value))]


def test_every_in_range_trial_value_has_a_command_line_or_a_reason():
    missing = {label(path, action) for path, action, _ in IN_RANGE if invocation(path, {k: "" for k in (
        "model", "data", "fasta", "region", "vcf", "anchors")}, "") is None}
    assert missing == NOT_RUN


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    import json

    from helpers import tiny_model
    from senformer import save_model
    from senformer.data.genome import Genome, Interval
    from senformer.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("options")
    data = make_synthetic(root / "data", size="tiny", seed=0)
    statistics = json.loads((data / "statistics.json").read_text())
    save_model(tiny_model(seed=1, target_length=statistics["target_length"],
                          output_heads={"human": statistics["num_targets"]}), root / "model")
    chrom = (data / "genome.fa.fai").read_text().split("\t")[0]
    with Genome(data / "genome.fa") as genome:
        ref = genome.fetch(Interval(chrom, 2999, 3000))
    (root / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                f"{chrom}\t3000\tsnv\t{ref}\t{'A' if ref != 'A' else 'C'}\t.\t.\t.\n")
    (root / "anchors.bed").write_text(f"{chrom}\t2990\t2991\tgene\t0\t+\n")
    return {"model": str(root / "model"), "data": str(data), "fasta": str(data / "genome.fa"),
            "region": f"{chrom}:3000-3100", "vcf": str(root / "v.vcf"), "anchors": str(root / "anchors.bed")}


@pytest.mark.slow
@pytest.mark.parametrize("path, action, value", [case for case in IN_RANGE if label(*case[:2]) not in NOT_RUN],
                         ids=[f"{label(p, a)}={v}" for p, a, v in IN_RANGE if label(p, a) not in NOT_RUN])
def test_an_in_range_value_runs_or_is_one_line(path, action, value, space, tmp_path, capsys):
    count = action.nargs if isinstance(action.nargs, int) else 1
    status = main([*invocation(path, space, str(tmp_path / "out")), action.option_strings[0], *[value] * count])
    err = capsys.readouterr().err
    assert status in (0, 2) and "Traceback" not in err, err
    if status == 2:
        assert err.count("\n") == 1 and "error: " in err, err


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted({path for path, action, _ in IN_RANGE if label(path, action) not in NOT_RUN}),
                         ids=" ".join)
def test_each_command_line_runs_as_it_stands(path, space, tmp_path, capsys):
    """So that a trial value's exit 2 is the value's doing, not a broken command line's."""
    assert main(invocation(path, space, str(tmp_path / "out"))) == 0, capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("path, extra", [
    (("analyze", "attribution"), ["--bins", "500"]),  # the tiny model has 16 bins
    (("analyze", "attribution"), ["--example", "100000"]),
    (("analyze", "receptive-field"), ["--at", "100000"]),  # past the 4,096-bp input
    (("analyze", "compare"), ["--max-examples", "100000"]),
    (("predict",), ["--batch-size", "100000"]),
], ids=lambda item: " ".join(item))
def test_a_value_past_what_the_model_or_data_holds_is_one_line(path, extra, space, tmp_path, capsys):
    """Ranges known only once the model or the data is open: a UserError, not a traceback."""
    status = main([*invocation(path, space, str(tmp_path / "out")), *extra])
    err = capsys.readouterr().err
    assert status in (0, 2) and "Traceback" not in err, err
    if status == 2:
        assert err.count("\n") == 1 and extra[1] in err, err
