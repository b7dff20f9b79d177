"""The recorded study's write-up is exactly what its study.json generates (every number in it is the
record's), and it says that the redesigned study (issue 23) awaits its recorded run."""

import os
from pathlib import Path

from senformer.study.writeup import REDESIGN_NOTE, write_docs

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "benchmarks" / "results" / "accuracy_study"


def test_the_recorded_write_up_is_generated_from_study_json(tmp_path):
    import json

    record = json.loads((RECORDED / "study.json").read_text())
    generated = write_docs(record, tmp_path / "accuracy-study.md", RECORDED).read_text()
    link = os.path.relpath(RECORDED.resolve(), tmp_path.resolve())
    generated = generated.replace(link, "../benchmarks/results/accuracy_study")
    assert generated == (ROOT / "docs" / "accuracy-study.md").read_text()
    if "decisions" not in record:
        assert REDESIGN_NOTE in generated
