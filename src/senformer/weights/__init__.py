"""Weights in every format Enformer ships in, meeting at one state dict in senformer's names.

One load and one save: :func:`load_model` reads every format (native, TF checkpoint, TF-Hub SavedModel,
enformer-pytorch / Hugging Face), adds new heads and keeps named tensors fresh; :func:`save_model` writes
the native format (``config.json`` + ``model.safetensors``).

>>> from senformer.weights import load_model, save_model
>>> model = load_model("enformer-fine-tuned-human-1", overrides={"attention": "bigbird"})  # TF checkpoint prefix
>>> save_model(model, "enformer-native")
"""

import os
from pathlib import Path

from .infer import infer_config
from .loading import ATTENTION_TENSORS, FORMATS, LoadReport, detect_format, load_local_model
from .native import save_model


def load_model(path: str | os.PathLike, overrides=None, strict: bool = True, **options):
    """:func:`senformer.weights.loading.load_local_model` (every argument and the result are its), which
    also takes a known name for ``path``: ``"enformer"`` is DeepMind's model, converted once into the cache
    (:func:`senformer.hub.resolve_weights`; downloaded on first use). A local path of that name wins."""
    from ..hub import WEIGHTS, resolve_weights

    if os.fspath(path) in WEIGHTS and not Path(path).exists():
        path = resolve_weights(path)
    return load_local_model(path, overrides, strict, **options)


__all__ = ["ATTENTION_TENSORS", "FORMATS", "LoadReport", "detect_format", "infer_config", "load_model", "save_model"]
