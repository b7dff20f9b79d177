"""Shared test helpers: tiny configurations, randomised weights, random genomes, the shared reference folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from senformer import Enformer, EnformerConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def tiny_config(**overrides) -> EnformerConfig:
    """A model of a few thousand parameters: dim 48, 2 heads, key 8, 2 layers, one 5-track head.

    Its input must be a multiple of 128 bp; ``target_length=None`` keeps every position beyond the
    320-bin margins, so inputs of at least 641 x 128 bp are valid. Pass ``target_length=k`` for shorter ones.
    """
    values = dict(
        dim=48, depth=2, heads=2, key_size=8, conv_tower_divisible_by=8, output_heads={"human": 5, "mouse": 3},
        target_length=8, block_size=4, chunk_size=5, dropout_rate=0.0, attention_dropout_rate=0.0,
        positional_dropout_rate=0.0, final_dropout_rate=0.0,
    )
    values.update(overrides)
    return EnformerConfig(**values)


def randomize_(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Set every parameter and BatchNorm statistic to seeded random values.

    The official initialisation zeroes the attention output layer; with it at zero every attention kind
    gives the same output and a comparison proves nothing, so tests always randomise it.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            else:
                parameter.copy_(scale * noise)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator, dtype=torch.float64))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator, dtype=torch.float64))
    return model


def tiny_model(seed: int = 0, **overrides) -> Enformer:
    torch.manual_seed(seed)
    return randomize_(Enformer(tiny_config(**overrides)), seed).eval()


def random_tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (batch, length), generator=generator)


def write_random_chromosome(path: Path, length: int, seed: int, name: str = "chr1") -> str:
    """A one-record FASTA of ``length`` random A/C/G/T bases in 80-column lines; returns the sequence."""
    rng = np.random.default_rng(seed)
    sequence = "".join(rng.choice(list("ACGT"), length))
    path.write_text(f">{name}\n" + "\n".join(sequence[i : i + 80] for i in range(0, length, 80)) + "\n")
    return sequence
