"""Which bases drive a prediction: gradient x input and in-silico mutagenesis (ISM).

Both explain one scalar: the model's prediction summed over the chosen output bins and averaged over the
chosen tracks of one head. Gradient x input is one backward pass; ISM reruns the model for every
alternative base in a window and records the scalar's change, the reference base's entry being 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model.enformer import Enformer
from ..sequence import tokens_to_one_hot


@dataclass
class Target:
    """The explained scalar: ``head``, track positions (None: all) and output bins (None: all)."""

    head: str
    tracks: list[int] | None = None
    bins: list[int] | None = None

    def score(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch,) sum over the bins of the mean over the tracks."""
        values = outputs[self.head]  # (batch, bins, tracks)
        if self.bins is not None:
            values = values[:, torch.as_tensor(self.bins, dtype=torch.long)]
        if self.tracks is not None:
            values = values[..., torch.as_tensor(self.tracks, dtype=torch.long)]
        return values.mean(dim=-1).sum(dim=-1)

    def validate(self, model: Enformer, sequence_length: int) -> None:
        if self.head not in model.config.output_heads:
            raise ValueError(f"unknown head {self.head!r}; the model has {', '.join(model.config.output_heads)}")
        tracks, bins = model.config.output_heads[self.head], model.config.output_length(sequence_length)
        for name, values, limit in (("track", self.tracks, tracks), ("bin", self.bins, bins)):
            if values is not None and (not values or min(values) < 0 or max(values) >= limit):
                raise ValueError(f"{name}s must lie in 0..{limit - 1}; got {list(values)}")


def _one_hot(sequence: torch.Tensor) -> torch.Tensor:
    """(bp,) tokens or (bp, 4) one-hot -> (bp, 4) float one-hot."""
    if sequence.dtype.is_floating_point:
        if sequence.dim() != 2 or sequence.shape[1] != 4:
            raise ValueError(f"a one-hot sequence must be (bp, 4), got {tuple(sequence.shape)}")
        return sequence.float()
    if sequence.dim() != 1:
        raise ValueError(f"a token sequence must be (bp,), got {tuple(sequence.shape)}")
    return tokens_to_one_hot(sequence)


def gradient_times_input(model: Enformer, sequence: torch.Tensor, target: Target) -> np.ndarray:
    """Gradient of the target scalar with respect to the one-hot input, times the input.

    Args:
        sequence: (bp,) tokens or (bp, 4) one-hot.
    Returns:
        (bp, 4) float32: non-zero only at each position's base (all zero at N).
    """
    one_hot = _one_hot(sequence)
    target.validate(model, one_hot.shape[0])
    model.eval()
    parameter = next(model.parameters())
    inputs = one_hot[None].to(device=parameter.device, dtype=parameter.dtype).requires_grad_(True)
    with torch.enable_grad():
        score = target.score(model(inputs, heads=[target.head]))
        (gradient,) = torch.autograd.grad(score.sum(), inputs)
    return (gradient * inputs).detach()[0].float().cpu().numpy()


@torch.no_grad()
def in_silico_mutagenesis(
    model: Enformer,
    sequence: torch.Tensor,
    target: Target,
    start: int = 0,
    end: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """Change of the target scalar for every single-base substitution in ``[start, end)``.

    Args:
        sequence: (bp,) tokens or (bp, 4) one-hot.
        start, end: the mutated window, 0-based half-open in the input (default: the whole input).
    Returns:
        (end - start, 4) float64: ``score(mutant) - score(reference)``; 0 at the reference base.
    """
    one_hot = _one_hot(sequence)
    length = one_hot.shape[0]
    target.validate(model, length)
    end = length if end is None else end
    if not 0 <= start < end <= length:
        raise ValueError(f"the mutated window [{start}, {end}) must lie inside the {length}-bp input")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model.eval()
    parameter = next(model.parameters())
    one_hot = one_hot.to(device=parameter.device, dtype=parameter.dtype)
    reference = float(target.score(model(one_hot[None], heads=[target.head]))[0])
    mutations = [(position, base) for position in range(start, end) for base in range(4)
                 if one_hot[position, base] != 1]
    effects = np.zeros((end - start, 4), dtype=np.float64)
    for first in tqdm(range(0, len(mutations), batch_size), desc="mutagenesis", unit="batch", disable=not progress):
        chunk = mutations[first : first + batch_size]
        mutated = one_hot.repeat(len(chunk), 1, 1)
        for row, (position, base) in enumerate(chunk):
            mutated[row, position] = 0
            mutated[row, position, base] = 1
        scores = target.score(model(mutated, heads=[target.head])).double().cpu().numpy()
        for row, (position, base) in enumerate(chunk):
            effects[position - start, base] = scores[row] - reference
    return effects
