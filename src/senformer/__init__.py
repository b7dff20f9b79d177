"""senformer: Enformer in PyTorch with exact full, memory-lean chunked and BigBird block-sparse attention.

>>> from senformer import Enformer, EnformerConfig, load_model, save_model
>>> model = Enformer(EnformerConfig(attention="bigbird"))
>>> sparse = load_model("enformer-native", overrides={"attention": "bigbird"})  # any weights format
>>> save_model(sparse, "senformer-native")
"""

from .config import ATTENTION_KINDS, PRESETS, EnformerConfig, preset
from .model.enformer import Enformer
from .sequence import one_hot, reverse_complement
from .version import __version__
from .weights import load_model, save_model

__all__ = [
    "ATTENTION_KINDS",
    "PRESETS",
    "Enformer",
    "EnformerConfig",
    "__version__",
    "load_model",
    "one_hot",
    "preset",
    "reverse_complement",
    "save_model",
]
