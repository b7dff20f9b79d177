"""Training and fine-tuning: full, attention-only, heads or a name pattern; distillation from a
full-attention teacher; exact resume; DDP on gloo or NCCL with cross-rank BatchNorm.

>>> from senformer.train import TrainSettings, run_training
>>> settings = TrainSettings(data={"human": "data/human"}, init_weights="enformer", attention="bigbird",
...                          train="attention", teacher="enformer", steps=1000)
>>> run_training(settings, "runs/bigbird-attention")  # -> runs/bigbird-attention/weights

The public names are resolved on first use (PEP 562), so that ``senformer train --help`` reads
:class:`TrainSettings` without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# Public name -> the submodule that defines it.
_EXPORTS = {
    "BasenjiSource": ".data", "BatchStream": ".data", "InMemoryExamples": ".data", "augment": ".data",
    "CrossRankBatchNorm": ".distributed", "convert_batchnorm": ".distributed", "setup_distributed": ".distributed",
    "freeze": ".freeze", "set_training_mode": ".freeze", "trainable_names": ".freeze",
    "HeadData": ".loop", "TrainingInterrupted": ".loop", "run_training": ".loop",
    "distillation_loss": ".losses", "poisson_loss": ".losses", "poisson_multinomial_loss": ".losses",
    "build_scheduler": ".schedule", "learning_rate_factor": ".schedule",
    "TrainSettings": ".settings",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .data import BasenjiSource, BatchStream, InMemoryExamples, augment
    from .distributed import CrossRankBatchNorm, convert_batchnorm, setup_distributed
    from .freeze import freeze, set_training_mode, trainable_names
    from .loop import HeadData, TrainingInterrupted, run_training
    from .losses import distillation_loss, poisson_loss, poisson_multinomial_loss
    from .schedule import build_scheduler, learning_rate_factor
    from .settings import TrainSettings

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
