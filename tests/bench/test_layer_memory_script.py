"""benchmarks/layer_memory.py: the exact per-layer memory behind Figure 2, at one short length."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "layer_memory.py"


def test_layer_memory_script_writes_its_table(tmp_path):
    spec = importlib.util.spec_from_file_location("layer_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--lengths", "131072"]) == 0
    rows = json.loads((tmp_path / "layer_memory.json").read_text())["rows"]
    saved = {(r["precision"], r["attention"]): r["saved_bytes"] for r in rows}
    assert len(saved) == 6 and all(value > 0 for value in saved.values())
    # At 1,024 positions full attention already keeps more than the linear kinds; bf16 keeps less than fp32.
    for precision in ("fp32", "bf16"):
        assert saved[(precision, "bigbird")] < saved[(precision, "full")]
        assert saved[(precision, "chunked")] < saved[(precision, "full")]
    assert saved[("bf16", "full")] < saved[("fp32", "full")]
    assert "bigbird / full" in (tmp_path / "layer_memory.md").read_text()
