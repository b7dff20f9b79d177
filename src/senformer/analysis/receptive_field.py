"""Figure 8: how far a single-base change reaches in the output.

For each sequence, each of K positions spread across the input is mutated (to every alternative base, or
to one seeded alternative) and the model is rerun; the mean absolute change of the prediction per output
bin (averaged over tracks, alternatives and sequences) gives a (positions, bins) map. A model without
transformer layers can only change the bins whose conv-tower window covers the mutation
(:func:`senformer.model.tiling.conv_reach`); attention spreads the change over the whole output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..constants import CROP_MARGIN
from ..edits import Edit, EditEngine
from ..errors import UserError
from ..model.enformer import Enformer
from ..model.tiling import conv_reach
from ..sequence import BASES, N_TOKEN

ALTERNATIVES = ("all", "random")


@dataclass
class ReceptiveField:
    """The result of :func:`receptive_field`.

    ``change``: (positions, bins) mean absolute change per output bin; ``change_per_sequence``:
    (sequences, positions, bins); ``positions``: (positions,) mutated bp (0-based, in the input);
    ``bin_centers``: (bins,) each output bin's centre in input bp.
    """

    positions: np.ndarray
    bin_centers: np.ndarray
    change: np.ndarray
    change_per_sequence: np.ndarray
    sequence_length: int
    head: str
    alternatives: str
    settings: dict = field(default_factory=dict)

    def profile(self) -> np.ndarray:
        """(bins,) mean change per bin over the mutated positions."""
        return self.change.mean(axis=0)

    def reach(self, threshold: float = 0.0) -> np.ndarray:
        """(positions,) share of output bins whose change exceeds ``threshold``."""
        return (self.change > threshold).mean(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "positions": self.positions,
            "bin_centers": self.bin_centers,
            "change": self.change,
            "change_per_sequence": self.change_per_sequence,
        }


def spread_positions(sequence_length: int, count: int) -> np.ndarray:
    """``count`` positions evenly spread over the input, each in the middle of its share."""
    if not 1 <= count <= sequence_length:
        raise ValueError(f"the number of positions must be in 1..{sequence_length}, got {count}")
    return ((np.arange(count) + 0.5) * sequence_length / count).astype(np.int64)


def random_sequences(count: int, sequence_length: int, seed: int = 0) -> torch.Tensor:
    """(count, bp) uniformly random ACGT tokens from a local seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (count, sequence_length), generator=generator)


def output_bin_centers(config, sequence_length: int) -> np.ndarray:
    """(bins,) centre in input bp of each output bin after the crop."""
    positions = config.num_positions(sequence_length)
    bins = config.output_length(sequence_length)
    first = (positions - bins) // 2 if config.target_length is not None else CROP_MARGIN
    return (first + np.arange(bins)) * config.bin_size + config.bin_size / 2


def conv_reach_mask(model: Enformer, sequence_length: int, positions: np.ndarray) -> np.ndarray:
    """(positions, bins) True where an output bin's conv window covers the mutated position: the only bins
    a model without transformer layers can change."""
    config = model.config
    left, right = conv_reach(model)
    centers = output_bin_centers(config, sequence_length)
    starts = (centers - config.bin_size / 2).astype(np.int64)
    positions = np.asarray(positions)[:, None]
    return (positions >= starts[None, :] - left) & (positions <= starts[None, :] + right)


def _mutations(reference: torch.Tensor, positions: np.ndarray, alternatives: str,
               generator: torch.Generator) -> list[tuple[int, int, int]]:
    """(position index, bp, alternative token) for one sequence of tokens."""
    mutations = []
    for k, position in enumerate(positions):
        base = int(reference[position])
        choices = [token for token in range(4) if token != base]
        if alternatives == "random":
            choices = [choices[int(torch.randint(len(choices), (1,), generator=generator))]]
        mutations.extend((k, int(position), token) for token in choices)
    return mutations


def receptive_field(
    model: Enformer,
    sequences: torch.Tensor,
    positions: np.ndarray | None = None,
    num_positions: int = 16,
    alternatives: str = "all",
    head: str | None = None,
    tracks: list[int] | None = None,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    plain: bool = False,
) -> ReceptiveField:
    """Mean absolute change per output bin from single-base substitutions.

    Args:
        model: any Enformer (run in eval mode).
        sequences: (sequences, bp) integer tokens (0-3 ACGT, 4 N).
        positions: mutated bp (0-based); default ``num_positions`` spread evenly over the input.
        alternatives: ``"all"`` every other base (three, or four at an N), ``"random"`` one seeded other base.
        head: output head (default: the first).
        tracks: track positions averaged (default: all).
        batch_size: mutated sequences per forward pass.
        seed: seeds the ``"random"`` alternatives.
        plain: run every mutated sequence whole instead of through the edit engine
            (:class:`senformer.edits.EditEngine`, the default: the conv trunk once per sequence, each
            mutation recomputing only the trunk positions it reaches); the same numbers within its bound.
    Returns:
        :class:`ReceptiveField`.
    """
    if sequences.dim() != 2 or sequences.dtype.is_floating_point:
        raise ValueError(f"sequences must be integer tokens (sequences, bp); got {tuple(sequences.shape)} {sequences.dtype}")
    if alternatives not in ALTERNATIVES:
        raise ValueError(f"alternatives must be one of {', '.join(ALTERNATIVES)}, got {alternatives!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    config = model.config
    sequence_length = sequences.shape[1]
    config.validate_sequence_length(sequence_length)
    head = head or next(iter(config.output_heads))
    if head not in config.output_heads:
        raise UserError(f"unknown head {head!r}; the model has {', '.join(config.output_heads)}")
    if positions is None:
        positions = spread_positions(sequence_length, num_positions)
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0 or positions.min() < 0 or positions.max() >= sequence_length:
        raise UserError(f"positions must lie in 0..{sequence_length - 1} (the input); got {positions.tolist()}")
    model.eval()
    columns = None if tracks is None else {head: np.asarray(tracks, dtype=np.int64)}
    generator = torch.Generator().manual_seed(seed)
    bins = config.output_length(sequence_length)
    change = np.zeros((len(sequences), len(positions), bins), dtype=np.float64)
    counts = np.zeros((len(sequences), len(positions)), dtype=np.int64)

    plan = [(s, _mutations(sequences[s], positions, alternatives, generator)) for s in range(len(sequences))]
    total = sum(len(mutations) for _, mutations in plan)
    bar = tqdm(total=total, desc="receptive field", unit="seq", disable=not progress)
    for s, mutations in plan:
        # float64 from each pass, so the small differences are taken in float64
        engine = EditEngine(model, sequences[s], heads=[head], tracks=columns, batch_size=batch_size,
                            accumulate=torch.float64, plain=plain)
        reference = engine.reference_output()[head]  # (bins, tracks)
        edits = [Edit(position, BASES[int(sequences[s, position])], BASES[token])
                 for _, position, token in mutations]
        done = 0
        for chunk, outputs in engine.score(edits):
            difference = (outputs[head] - reference).abs().mean(dim=-1).numpy()  # (batch, bins)
            for row, (k, _, _) in enumerate(mutations[done : done + len(chunk)]):
                change[s, k] += difference[row]
                counts[s, k] += 1
            done += len(chunk)
            bar.update(len(chunk))
    bar.close()
    change /= np.maximum(counts, 1)[..., None]
    return ReceptiveField(
        positions=positions,
        bin_centers=output_bin_centers(config, sequence_length),
        change=change.mean(axis=0),
        change_per_sequence=change,
        sequence_length=sequence_length,
        head=head,
        alternatives=alternatives,
        settings={"attention": config.attention, "depth": config.depth, "sequences": len(sequences),
                  "seed": seed, "tracks": tracks, "uses_n": bool((sequences == N_TOKEN).any())},
    )


def dataset_tokens(data: str | os.PathLike, split: str, count: int, sequence_length: int) -> torch.Tensor:
    """(count, bp) tokens of the first ``count`` examples of a Basenji2-layout folder's ``split``."""
    from ..data.basenji import BasenjiDataset
    from ..sequence import one_hot_to_tokens

    dataset = BasenjiDataset(data, split, sequence_length=sequence_length, max_examples=count)
    sequences = torch.stack([example["sequence"] for example in dataset])
    if sequences.shape[1] != sequence_length:
        raise UserError(f"{data} holds {sequences.shape[1]:,}-bp sequences, not --length {sequence_length:,}")
    return one_hot_to_tokens(sequences)


def run_receptive_field(
    out: str | os.PathLike,
    models: Mapping[str, Enformer],
    sequences: torch.Tensor,
    *,
    positions: Sequence[int] | None = None,
    num_positions: int = 16,
    alternatives: str = "all",
    head: str | None = None,
    tracks=None,
    targets=None,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    plain: bool = False,
) -> dict[str, dict]:
    """``senformer analyze receptive-field``: Figure 8 for each model, written into ``out``.

    Files per model: ``receptive_field_<name>.npz`` (:meth:`ReceptiveField.to_arrays`), a heatmap and a
    profile (``receptive_field_<name>_heatmap.png``, ``_profile.png``); and ``receptive_field.json``, the
    returned summary ``{name: {attention, depth, sequence_length, head, tracks, positions, reach_share,
    max_change, profile}}`` (``tracks`` null: every track), where ``reach_share`` is the share of output
    bins each mutation changes by more than 1e-3 of the largest change.

    Args:
        sequences: (sequences, bp) tokens (:func:`random_sequences`, :func:`dataset_tokens`).
        tracks: ``--tracks`` values (:func:`senformer.data.tracks.select_tracks`), averaged; default all.
        targets: names the head's tracks (:func:`senformer.data.tracks.head_track_table`).
    Other arguments as :func:`receptive_field`.
    """
    from ..io import save_figure, write_json, write_npz
    from ..plots import new_figure, receptive_field_heatmap, receptive_field_profile
    from .common import chosen_tracks

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, model in models.items():
        model_head = head or next(iter(model.config.output_heads))
        _, chosen = chosen_tracks(model, model_head, tracks, targets)
        result = receptive_field(model, sequences, positions=positions, num_positions=num_positions,
                                 alternatives=alternatives, head=model_head, tracks=chosen,
                                 batch_size=batch_size, seed=seed, progress=progress, plain=plain)
        write_npz(out / f"receptive_field_{name}.npz", **result.to_arrays())
        peak = float(result.change.max())
        summary[name] = {
            "attention": model.config.attention, "depth": model.config.depth,
            "sequence_length": result.sequence_length, "head": result.head, "tracks": chosen,
            "positions": result.positions.tolist(),
            "reach_share": result.reach(1e-3 * peak).tolist(), "max_change": peak,
            "profile": result.profile().tolist(),
        }
        title = f"{name} ({model.config.attention}, depth {model.config.depth})"
        figure = new_figure(6.5, 4.0)
        receptive_field_heatmap(figure.subplots(), result.change, result.positions, result.bin_centers, title)
        save_figure(out / f"receptive_field_{name}_heatmap.png", figure)
        figure = new_figure(6.5, 3.6)
        receptive_field_profile(figure.subplots(), result.change, result.positions, result.bin_centers, title)
        save_figure(out / f"receptive_field_{name}_profile.png", figure)
    write_json(out / "receptive_field.json", summary)
    return summary
