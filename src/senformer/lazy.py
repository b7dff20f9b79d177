"""Public names a package resolves on first use (PEP 562), so that importing the package (and so any of its
modules, and ``senformer --help``) does not import torch."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable, Mapping


class _LazyPackage(types.ModuleType):
    """A package whose public names win over its submodules of the same name.

    The import system sets a package's attribute to every submodule it imports. Where a public name is also
    a submodule's (``senformer.train.freeze``, the module, and ``freeze``, its function), the name keeps the
    function, as an eager ``from .freeze import freeze`` in ``__init__`` made it."""

    def __setattr__(self, name: str, value: Any) -> None:
        exports = self.__dict__.get("_lazy_exports", {})
        if name in exports and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each public name in ``exports`` (name -> the relative module
    that defines it) is imported on its first lookup and then kept in the package's namespace."""
    module = sys.modules[package]
    module._lazy_exports = dict(exports)
    module.__class__ = _LazyPackage

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(module, name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
