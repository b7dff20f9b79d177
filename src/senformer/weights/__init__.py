"""Weights in every format Enformer ships in, meeting at one state dict in senformer's names.

>>> from senformer.weights import load_model, save_pretrained
>>> model = load_model("enformer-fine-tuned-human-1", overrides={"attention": "bigbird"})  # TF checkpoint prefix
>>> save_pretrained(model, "enformer-native")  # config.json + model.safetensors
"""

from .infer import infer_config
from .loading import (
    FORMATS,
    LoadedWeights,
    LoadReport,
    compare_state,
    convert,
    detect_format,
    load_model,
    load_state,
    load_weights,
    read_weights,
    save_pretrained,
)

__all__ = [
    "FORMATS",
    "LoadReport",
    "LoadedWeights",
    "compare_state",
    "convert",
    "detect_format",
    "infer_config",
    "load_model",
    "load_state",
    "load_weights",
    "read_weights",
    "save_pretrained",
]
