"""Training and fine-tuning: full, attention-only, heads or a name pattern; distillation from a
full-attention teacher; exact resume; DDP on gloo or NCCL with cross-rank BatchNorm.

>>> from senformer.train import TrainSettings, run_training
>>> settings = TrainSettings(data={"human": "data/human"}, init_weights="enformer-native", attention="bigbird",
...                          train="attention", teacher="enformer-native", steps=1000)
>>> run_training(settings, "runs/bigbird-attention")  # -> runs/bigbird-attention/weights
"""

from .data import BasenjiSource, BatchStream, InMemoryExamples, augment
from .distributed import CrossRankBatchNorm, convert_batchnorm, setup_distributed
from .freeze import freeze, set_training_mode, trainable_names
from .loop import HeadData, TrainingInterrupted, run_training
from .losses import distillation_loss, poisson_loss
from .schedule import build_scheduler, learning_rate_factor
from .settings import TrainSettings

__all__ = [
    "BasenjiSource",
    "BatchStream",
    "CrossRankBatchNorm",
    "HeadData",
    "InMemoryExamples",
    "TrainSettings",
    "TrainingInterrupted",
    "augment",
    "build_scheduler",
    "convert_batchnorm",
    "distillation_loss",
    "freeze",
    "learning_rate_factor",
    "poisson_loss",
    "run_training",
    "set_training_mode",
    "setup_distributed",
    "trainable_names",
]
