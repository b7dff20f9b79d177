"""What trains: every parameter, the transformer's attention modules, the heads, or a name pattern.

Frozen parameters get ``requires_grad=False``; when the convolutional trunk is frozen its BatchNorm layers
stay in eval mode, so their running statistics never move and they normalise with the pretrained ones.
"""

from __future__ import annotations

import re

from torch import nn

from ..errors import UserError
from ..model.enformer import Enformer
from .settings import TRAINABLE_CHOICES


def trainable_names(model: Enformer, what: str) -> list[str]:
    """Parameter names that train under ``what``: ``all``, ``attention``, ``heads`` or a regular expression
    searched in each name (e.g. ``'^transformer\\.(9|10)\\.'``)."""
    names = [name for name, _ in model.named_parameters()]
    if what == "all":
        return names
    if what == "attention":
        # Only the attention modules, not their LayerNorm or the MLP (the report's fine-tuning).
        attention_ids = {id(p) for module in model.attention_modules() for p in module.parameters()}
        return [name for name, p in model.named_parameters() if id(p) in attention_ids]
    if what == "heads":
        return [name for name in names if name.startswith("heads.")]
    try:
        pattern = re.compile(what)
    except re.error as error:
        raise UserError(f"train={what!r} is neither {', '.join(TRAINABLE_CHOICES)} nor a valid regular expression: {error}") from None
    chosen = [name for name in names if pattern.search(name)]
    if not chosen:
        raise UserError(f"train pattern {what!r} matches no parameter (names look like 'transformer.0.attention.to_q.weight')")
    return chosen


def freeze(model: Enformer, what: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Set ``requires_grad`` for training ``what`` plus the parameter names in ``extra`` (new heads);
    return the trainable names."""
    chosen = set(trainable_names(model, what)) | set(extra)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in chosen)
    return [name for name, _ in model.named_parameters() if name in chosen]


def frozen_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers whose affine parameters are all frozen: they run in eval mode during training."""
    return [
        module for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and not any(p.requires_grad for p in module.parameters(recurse=False))
    ]


def set_training_mode(model: nn.Module) -> None:
    """``model.train()`` except frozen BatchNorm layers, which keep the pretrained statistics (eval mode)."""
    model.train()
    for module in frozen_batchnorms(model):
        module.eval()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
