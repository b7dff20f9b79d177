"""The built wheel installs into a fresh virtual environment and its command runs there.

The wheel is built from this checkout and installed without dependencies into a new venv; the dependencies
come from this environment's site-packages (a ``.pth`` line), so nothing is downloaded, and ``senformer``
itself can only come from the wheel (this environment's editable install is not visible there).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # builds a wheel and a venv: about 20 s


def _run(*command, **options) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **options)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    pytest.importorskip("setuptools")
    # Build from a copy: setuptools writes build/ and *.egg-info into the tree it builds, and two runs (or a
    # stale build/ folder of the checkout) must not share them.
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source)
    (wheel,) = dist.glob("senformer-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "_senformer_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    help_text = _run(venv / "bin" / "senformer", "--help").stdout
    for command in ("predict", "evaluate", "train", "download", "analyze"):
        assert command in help_text
    probe = ("import senformer, senformer.data.tracks as tracks; "
             "print(senformer.__file__); print(len(tracks.track_table('human')))")
    location, count = _run(python, "-c", probe, cwd=tmp_path).stdout.split()
    assert Path(location).is_relative_to(venv) and int(count) == 5313  # the shipped track table is in the wheel
