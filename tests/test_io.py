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
