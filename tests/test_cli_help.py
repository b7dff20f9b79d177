"""``senformer --help`` and every subcommand's ``--help`` answer without importing torch: the parsers are built
from modules that import torch (and the model) inside their run functions. No timing is asserted; importing
torch is what made ``--help`` take seconds."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from senformer.cli import build_parser


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every level of the command tree: ``[(), ("info",), ..., ("data", "synthetic"), ...]``."""
    paths = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths += _command_paths(child, (*path, name))
    return paths


# One fresh interpreter asks every --help in turn and names the first that imported torch.
PROBE = """
import json, sys
from senformer.cli import main
paths = json.loads(sys.argv[1])
first = None
for path in paths:
    try:
        main([*path, "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0, (path, exit_.code)
    if first is None and "torch" in sys.modules:
        first = path
print(json.dumps({"asked": len(paths), "first_to_import_torch": first}))
"""


def test_every_help_answers_without_importing_torch():
    paths = _command_paths(build_parser())
    assert len(paths) > 20 and ("analyze", "variants") in paths and ("benchmark", "variants") in paths
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(paths)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"asked": len(paths), "first_to_import_torch": None}


def test_python_m_senformer_help_answers_without_importing_torch():
    # -X importtime lists every module the interpreter imported, on stderr.
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "senformer", "--help"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "usage: senformer" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "senformer.cli" in imported and "torch" not in imported


def test_the_public_names_still_import_from_the_package():
    import senformer
    from senformer import Enformer, EnformerConfig, load_model

    assert Enformer.__name__ == "Enformer" and EnformerConfig().dim == 1536 and callable(load_model)
    assert set(senformer.__all__) <= set(dir(senformer))
    try:
        senformer.not_a_name
    except AttributeError as error:
        assert "not_a_name" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
