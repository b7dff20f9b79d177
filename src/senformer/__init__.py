"""senformer: Enformer in PyTorch with exact full, memory-lean chunked and BigBird block-sparse attention.

>>> from senformer import Enformer, EnformerConfig, load_model, save_model
>>> model = Enformer(EnformerConfig(attention="bigbird"))
>>> sparse = load_model("enformer", overrides={"attention": "bigbird"})  # any weights format
>>> save_model(sparse, "senformer-native")

The public names are resolved on first use (PEP 562): importing any ``senformer.*`` module runs this file
first, and ``senformer --help`` must answer without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports
from .version import __version__

# Public name -> the module that defines it.
_EXPORTS = {
    "ATTENTION_KINDS": ".config",
    "PRESETS": ".config",
    "BORZOI_PRESETS": ".config",
    "BorzoiConfig": ".config",
    "EnformerConfig": ".config",
    "preset": ".config",
    "Enformer": ".model.enformer",
    "Borzoi": ".model.borzoi",
    "one_hot": ".sequence",
    "reverse_complement": ".sequence",
    "load_model": ".hub",
    "save_model": ".weights",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from .config import ATTENTION_KINDS, BORZOI_PRESETS, PRESETS, BorzoiConfig, EnformerConfig, preset
    from .model.borzoi import Borzoi
    from .model.enformer import Enformer
    from .sequence import one_hot, reverse_complement
    from .hub import load_model
    from .weights import save_model

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
