"""Weights in every format Enformer ships in, meeting at one state dict in senformer's names.

One load and one save: :func:`load_model` reads every format (native, TF checkpoint, TF-Hub SavedModel,
enformer-pytorch / Hugging Face), adds new heads and keeps named tensors fresh; :func:`save_model` writes
the native format (``config.json`` + ``model.safetensors``).

>>> from senformer.weights import load_model, save_model
>>> model = load_model("enformer-fine-tuned-human-1", overrides={"attention": "bigbird"})  # TF checkpoint prefix
>>> save_model(model, "enformer-native")
"""

from .infer import infer_config
from .loading import ATTENTION_TENSORS, FORMATS, LoadReport, detect_format
from .loading import load_local_model as load_model
from .native import save_model

__all__ = ["ATTENTION_TENSORS", "FORMATS", "LoadReport", "detect_format", "infer_config", "load_model", "save_model"]
