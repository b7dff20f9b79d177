"""The README's quickstart, run as written, against an HTTP server on 127.0.0.1 (only the URLs differ).

The server serves DeepMind's own small checkpoint (``../shared/fixtures/official_tf_tiny``: 384 channels,
1 layer, the real 5,313 human tracks) as ``enformer`` and a 5.3-Mbp random genome with HBB's sickle-cell base
(rs334, chr11:5,227,002 T) as ``hg38``. Every ``senformer`` and ``printf`` line of the quickstart block runs in
one shell, in a fresh folder, with ``SENFORMER_HOME`` and the two download URLs pointing at the test's own.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_hub import DATA_URL_PATH, GENOME_URL_PATH, INDEX_URL_PATH, LoopbackServer

from senformer import hub
from senformer.predictions import read_prediction

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.slow  # five commands on a 196,608-bp window of a small model: about a minute


def quickstart_commands() -> list[str]:
    """The quickstart block's command lines (comments dropped), without the install line."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- quickstart -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no quickstart block"
    lines = [line.split("  #")[0].rstrip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith(("make ", "#"))]


def test_quickstart_is_short_and_names_real_things():
    commands = quickstart_commands()
    assert len(commands) + 1 <= 10  # with the install line
    assert any("--weights enformer" in line for line in commands)
    assert any("--region chr11:5,225,000-5,230,000" in line and "'CAGE:.*K562'" in line for line in commands)


def _genome() -> bytes:
    rng = np.random.default_rng(11)
    chr11 = bytearray(rng.choice(list(b"ACGT"), 5_300_000).astype(np.uint8).tobytes())
    chr11[5_227_002 - 1] = ord("T")  # rs334's reference base (1-based position)
    text = b">chr11\n" + b"\n".join(bytes(chr11[i : i + 60]) for i in range(0, len(chr11), 60)) + b"\n"
    return gzip.compress(text, compresslevel=1, mtime=0)


def test_quickstart_runs_as_written(shared_dir, tmp_path):
    fixture = shared_dir / "fixtures" / "official_tf_tiny"
    server = LoopbackServer({INDEX_URL_PATH: (fixture / "ckpt.index").read_bytes(),
                             DATA_URL_PATH: (fixture / "ckpt.data-00000-of-00001").read_bytes(),
                             GENOME_URL_PATH: _genome()})
    try:
        env = {**os.environ, hub.HOME_ENV: str(tmp_path / "home"), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
               hub.WEIGHTS_URL_ENV: f"{server.url}/sonnet_weights", hub.GENOME_URL_ENV: f"{server.url}/goldenPath",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        script = "set -euo pipefail\n" + "\n".join(quickstart_commands()) + "\n"
        result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=1200)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    prediction = read_prediction(tmp_path / "hbb.h5")
    described = prediction.tracks["human"]["description"]
    assert len(described) > 0 and described.str.contains("CAGE").all() and described.str.contains("K562").all()
    assert np.isfinite(prediction.values["human"]).all()
    assert (tmp_path / "hbb.png").read_bytes().startswith(b"\x89PNG")
    scores = pd.read_csv(tmp_path / "rs334.tsv", sep="\t")
    assert list(scores["id"]) == ["rs334"] and scores.filter(regex="^SAD:").shape[1] == len(described)
    assert np.isfinite(scores.filter(regex="^(SAD|REF|ALT):").to_numpy()).all()
