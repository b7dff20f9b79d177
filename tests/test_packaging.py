"""The built wheel installs into a fresh virtual environment, its command runs there and reports the one version
(the wheel's, ``senformer --version``'s and the run records'), and its metadata is what a package index shows;
the licence, citation and changelog a lab needs before adopting the code are present and well formed.

The wheel is built from this checkout and installed without dependencies into a new venv; the dependencies
come from this environment's site-packages (a ``.pth`` line), so nothing is downloaded, and ``senformer``
itself can only come from the wheel (this environment's editable install is not visible there).
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from senformer.version import __version__

REPO = Path(__file__).resolve().parents[1]


def _run(*command, **options) -> subprocess.CompletedProcess:
    # Without PYTHONPATH: a checkout's src/ on it would be imported instead of the installed wheel.
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, env=environment,
                            **options)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.mark.slow  # builds a wheel and a venv: about 20 s
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    pytest.importorskip("setuptools")
    # Build from a copy: setuptools writes build/ and *.egg-info into the tree it builds, and two runs (or a
    # stale build/ folder of the checkout) must not share them.
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source)
    (wheel,) = dist.glob("senformer-*.whl")
    assert wheel.name.startswith(f"senformer-{__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_bytes(archive.read(f"senformer-{__version__}.dist-info/METADATA"))
    assert f"senformer-{__version__}.dist-info/licenses/LICENSE" in names
    assert metadata["Version"] == __version__ and metadata["License-Expression"] == "Apache-2.0"
    assert {"hub", "bigwig", "tf"} <= set(metadata.get_all("Provides-Extra"))
    hub_requirements = [r for r in metadata.get_all("Requires-Dist") if r.startswith("huggingface_hub")]
    assert hub_requirements and all('extra == "hub"' in r or 'extra == "test"' in r for r in hub_requirements)
    classifiers = metadata.get_all("Classifier")
    assert "Topic :: Scientific/Engineering :: Bio-Informatics" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.") for c in classifiers)
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls["Enformer paper"].startswith("https://") and len(urls) >= 3
    assert "senformer" in metadata.get_payload()  # the README is the long description
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "_senformer_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    help_text = _run(venv / "bin" / "senformer", "--help").stdout
    assert _run(venv / "bin" / "senformer", "--version").stdout.strip() == f"senformer {__version__}"
    for command in ("predict", "evaluate", "train", "download", "analyze"):
        assert command in help_text
    probe = ("import importlib.metadata, senformer, senformer.data.tracks as tracks, senformer.record as record; "
             "print(senformer.__file__); print(len(tracks.track_table('human'))); "
             "print(importlib.metadata.version('senformer')); print(record.run_record('probe', {})['senformer']['version'])")
    location, count, installed, recorded = _run(python, "-c", probe, cwd=tmp_path).stdout.split()
    assert Path(location).is_relative_to(venv) and int(count) == 5313  # the shipped track table is in the wheel
    assert installed == recorded == __version__


def test_the_version_is_said_once():
    """pyproject.toml reads the version from senformer/version.py; no other file states it."""
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'attr = "senformer.version.__version__"' in pyproject
    assert re.search(r'^version\s*=\s*"', pyproject, re.MULTILINE) is None


def test_the_licence_is_the_apache_2_text_pyproject_declares():
    text = (REPO / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    assert all(f"{number}. " in text for number in range(1, 10))  # the nine sections


def test_citation_cff_names_this_release_and_its_references():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    for field in ("cff-version", "message", "title", "authors"):  # CFF 1.2.0's required fields
        assert citation[field], field
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert str(citation["version"]) == __version__ and citation["license"] == "Apache-2.0"
    references = {reference["title"]: reference for reference in citation["references"]}
    assert all(reference["type"] and reference["authors"] for reference in references.values())
    enformer = references["Effective gene expression prediction from sequence by integrating long-range interactions"]
    assert enformer["doi"] == "10.1038/s41592-021-01252-x" and enformer["authors"][0]["family-names"] == "Avsec"
    assert references["Big Bird: Transformers for Longer Sequences"]["authors"][0]["family-names"] == "Zaheer"
    s_enformer = references["Predicting gene expression from sequence using sparse-attention"]
    assert s_enformer["url"] == "https://currie32.github.io/s-enformer-website/"
    borzoi = references["Predicting RNA-seq coverage from DNA sequence as a unifying model of gene regulation"]
    assert borzoi["journal"] == "Nature Genetics" and borzoi["authors"][0]["family-names"] == "Linder"


def test_the_changelog_has_an_unreleased_section_and_this_version():
    headings = [line for line in (REPO / "CHANGELOG.md").read_text().splitlines() if line.startswith("## ")]
    assert headings[0] == "## Unreleased" and any(h.startswith(f"## {__version__} ") for h in headings)
