"""Lazily resolved public names (senformer.lazy): a name imports its module on first lookup and is kept; an
unknown name is an AttributeError; submodules still import through ``from package import submodule``."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from senformer.lazy import lazy_exports


def test_a_name_resolves_on_first_lookup_and_is_kept(monkeypatch):
    package = types.ModuleType("lazy_probe")
    monkeypatch.setitem(sys.modules, "lazy_probe", package)
    getattr_, dir_ = lazy_exports("lazy_probe", {"dumps": "json"})
    package.__getattr__ = getattr_
    assert package.dumps({"a": 1}) == '{"a": 1}'
    assert vars(package)["dumps"] is sys.modules["json"].dumps  # kept: the next lookup skips __getattr__
    assert "dumps" in dir_()
    with pytest.raises(AttributeError, match="'lazy_probe' has no attribute 'loads'"):
        package.loads


def test_the_training_package_resolves_its_names_and_submodules_in_a_fresh_interpreter():
    # freeze is a submodule and the function it defines: importing the submodule (run_training does) must not
    # turn the package's name into the module, as an eager __init__ never did.
    probe = ("import sys, senformer.train as train\n"
             "assert 'senformer.train.loop' not in sys.modules\n"
             "import senformer.train.loop\n"
             "from senformer.train import freeze\n"
             "assert callable(freeze) and freeze.__module__ == 'senformer.train.freeze', freeze\n"
             "from senformer.train import TrainSettings, checkpoint\n"
             "assert TrainSettings.__module__ == 'senformer.train.settings' and checkpoint.__name__.endswith('checkpoint')\n"
             "assert callable(train.run_training) and 'run_training' in dir(train)\n"
             "print('ok')")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
