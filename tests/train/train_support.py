"""Small in-memory datasets and settings for the training tests (tiny model, 1,024 bp, 8 bins)."""

from __future__ import annotations

import torch
from helpers import tiny_config

from senformer.train import HeadData, InMemoryExamples, TrainSettings

LENGTH = 1024  # bp: 8 positions of 128 bp = the tiny model's target_length


def examples(count: int, tracks: int, seed: int) -> InMemoryExamples:
    """Targets that depend on the sequence (GC content per bin), so training has something to learn."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 4, (count, LENGTH), generator=generator)
    gc = ((tokens == 1) | (tokens == 2)).float().view(count, 8, 128).mean(-1)  # (count, bins)
    scales = torch.rand(tracks, generator=generator) + 0.5
    targets = gc[:, :, None] * scales * 2 + 0.1 * torch.rand(count, 8, tracks, generator=generator)
    return InMemoryExamples(tokens, targets)


def head_data(heads=("human",), count: int = 16, seed: int = 0) -> dict[str, HeadData]:
    tracks = {"human": 5, "mouse": 3}
    return {
        head: HeadData(examples(count, tracks[head], seed + i), examples(8, tracks[head], seed + 100 + i))
        for i, head in enumerate(heads)
    }


def tiny_settings(heads=("human",), **overrides) -> TrainSettings:
    values = dict(
        data={head: f"in-memory-{head}" for head in heads},
        model_overrides=tiny_config().to_dict(), steps=4, batch_size=2, warmup_steps=2, learning_rate=1e-3,
        eval_every=0, checkpoint_every=2, log_every=1, progress=False, shift=0, reverse_complement=False,
    )
    values.update(overrides)
    return TrainSettings(**values)


def read_weights(directory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))
