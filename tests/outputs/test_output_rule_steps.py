"""The existing-output rule, the partial output and the finish (senformer.outputs.rule)."""

import os

import pytest


def _finished_file(out, fingerprint):
    from senformer.outputs.rule import FILE, finish_output, plan_output, start_partial

    plan = plan_output(out, FILE, fingerprint)
    start_partial(plan, {"command": "test"})
    plan.partial.write_text(f"rows of {fingerprint}\n")
    return finish_output(plan, {"command": "test"})


def test_a_complete_output_with_the_same_inputs_is_up_to_date_and_another_is_refused(tmp_path):
    import json

    from senformer.errors import UserError
    from senformer.fingerprint import value_digest as fingerprint
    from senformer.outputs.rule import FILE, finish_output, plan_output, start_partial

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
    from senformer.outputs.rule import DIRECTORY, FILE, finish_output, plan_output, start_partial

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
    from senformer.outputs.rule import DIRECTORY, FILE, finish_output, plan_output, start_partial

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


def test_a_resumed_partial_set_aside_is_removed_after_its_block_or_by_the_next_run(tmp_path):
    from senformer.outputs import FILE, Output

    out = tmp_path / "genes.h5"
    with Output(out, FILE, command="test", fingerprint="inputs-a") as output:
        output.start().write_text("rows")
    with Output(out, FILE, command="test", fingerprint="inputs-a") as output:
        assert output.resume
        with output.set_aside() as earlier:
            assert earlier.read_text() == "rows" and not output.partial.exists()
            output.partial.write_text("rows again")
        assert not earlier.exists()
    left = tmp_path / f".genes.h5.partial.resumed-{os.getpid() + 1}"  # a kill inside the block leaves it
    left.write_text("rows")
    with Output(out, FILE, command="test", fingerprint="inputs-a") as output:
        assert output.resume and not left.exists() and output.partial.read_text() == "rows again"


def test_an_interrupted_replacement_never_looks_up_to_date(tmp_path, monkeypatch):
    from senformer.outputs.rule import FILE, finish_output, plan_output, start_partial

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


def test_a_finish_killed_between_its_two_renames_is_completed_by_the_next_run(tmp_path, monkeypatch):
    """The file moved into place, its staged record not yet: the next run under the lock moves the record (the
    output is complete: OUT.partial is gone), so the output is up to date rather than 'without a run record'."""
    from senformer.outputs.rule import FILE, finish_output, plan_output, record_path, start_partial

    out = tmp_path / "scores.tsv"
    plan = plan_output(out, FILE, "new")
    start_partial(plan, {})
    plan.partial.write_text("rows of new\n")
    real_replace = os.replace
    calls = []

    def killed_at_the_second(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after OUT.partial -> OUT, before the record
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        finish_output(plan, {})
    monkeypatch.setattr(os, "replace", real_replace)
    assert out.read_text() == "rows of new\n" and not record_path(out, FILE).exists()
    assert plan_output(out, FILE, "new").up_to_date
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
