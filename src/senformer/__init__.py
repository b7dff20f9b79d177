"""senformer: Enformer in PyTorch with exact full, memory-lean chunked and BigBird block-sparse attention.

>>> from senformer import Enformer, EnformerConfig
>>> model = Enformer(EnformerConfig(attention="bigbird"))
"""

from .config import ATTENTION_KINDS, PRESETS, EnformerConfig, preset
from .model.enformer import Enformer
from .sequence import one_hot, reverse_complement

__version__ = "0.1.0"

__all__ = [
    "ATTENTION_KINDS",
    "PRESETS",
    "Enformer",
    "EnformerConfig",
    "one_hot",
    "preset",
    "reverse_complement",
]
