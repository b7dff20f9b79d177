"""Which bases drive a prediction: gradient x input and in-silico mutagenesis (ISM).

Both explain one scalar: the model's prediction summed over the chosen output bins and averaged over the
chosen tracks of one head. Gradient x input is one backward pass; ISM reruns the model for every
alternative base in a window and records the scalar's change, the reference base's entry being 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..model.enformer import Enformer
from ..sequence import BASES, as_one_hot


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
            raise UserError(f"unknown head {self.head!r}; the model has {', '.join(model.config.output_heads)}")
        tracks, bins = model.config.output_heads[self.head], model.config.output_length(sequence_length)
        for name, values, limit in (("track", self.tracks, tracks), ("bin", self.bins, bins)):
            if values is not None and (not values or min(values) < 0 or max(values) >= limit):
                raise UserError(f"{name}s must lie in 0..{limit - 1} for this model and input; got {list(values)}")


def gradient_times_input(model: Enformer, sequence: torch.Tensor, target: Target) -> np.ndarray:
    """Gradient of the target scalar with respect to the one-hot input, times the input.

    Args:
        sequence: (bp,) tokens or (bp, 4) one-hot.
    Returns:
        (bp, 4) float32: non-zero only at each position's base (all zero at N).
    """
    one_hot = as_one_hot(sequence)
    target.validate(model, one_hot.shape[0])
    model.eval()
    parameter = next(model.parameters())
    inputs = one_hot[None].to(device=parameter.device, dtype=parameter.dtype).requires_grad_(True)
    with torch.enable_grad():
        score = target.score(model(inputs, heads=[target.head]))
        (gradient,) = torch.autograd.grad(score.sum(), inputs)
    return (gradient * inputs).detach()[0].float().cpu().numpy()


def in_silico_mutagenesis(
    model: Enformer,
    sequence: torch.Tensor,
    target: Target,
    start: int = 0,
    end: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    plain: bool = False,
) -> np.ndarray:
    """Change of the target scalar for every single-base substitution in ``[start, end)``.

    The substitutions run through the edit engine (:class:`senformer.edits.EditEngine`): the reference conv
    trunk once, each substitution recomputing only the trunk positions it can reach; ``plain=True`` runs
    every mutated window whole instead (the same numbers within the engine's bound).

    Args:
        sequence: (bp,) tokens or (bp, 4) one-hot.
        start, end: the mutated window, 0-based half-open in the input (default: the whole input).
    Returns:
        (end - start, 4) float64: ``score(mutant) - score(reference)``; 0 at the reference base.
    """
    from ..edits import Edit, EditEngine
    from ..sequence import one_hot_to_tokens

    one_hot = as_one_hot(sequence)
    length = one_hot.shape[0]
    target.validate(model, length)
    end = length if end is None else end
    if not 0 <= start < end <= length:
        raise ValueError(f"the mutated window [{start}, {end}) must lie inside the {length}-bp input")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model.eval()
    parameter = next(model.parameters())
    # accumulated in the model's own dtype: the scalar is reduced over bins and tracks as the model gives them
    engine = EditEngine(model, one_hot, heads=[target.head], batch_size=batch_size, accumulate=parameter.dtype,
                        plain=plain)

    def score(outputs: dict[str, torch.Tensor]) -> np.ndarray:
        return target.score(outputs).double().numpy()

    reference = float(score({name: value[None] for name, value in engine.reference_output().items()})[0])
    bases = one_hot_to_tokens(one_hot)
    # every base but the one present: all four at an N (or any position that is not one base)
    edits = [Edit(position, BASES[int(bases[position])], BASES[base]) for position in range(start, end)
             for base in range(4) if one_hot[position, base] != 1]
    effects = np.zeros((end - start, 4), dtype=np.float64)
    with tqdm(total=len(edits), desc="mutagenesis", unit="mutation", disable=not progress) as bar:
        for chunk, outputs in engine.score(edits):
            for edit, value in zip(chunk, score(outputs)):
                effects[edit.position - start, "ACGT".index(edit.alt)] = value - reference
            bar.update(len(chunk))
    return effects


def region_input(fasta: str | os.PathLike, region: str, sequence_length: int) -> tuple[torch.Tensor, str]:
    """(bp, 4) one-hot of ``region`` (``chr:start-end``, 0-based half-open) resized around its centre to
    ``sequence_length``, and its label."""
    from ..data.genome import Genome, parse_region
    from ..sequence import one_hot

    interval = parse_region(region).resize(sequence_length)
    return one_hot(Genome(fasta).fetch(interval)), str(interval)


def example_input(data: str | os.PathLike, split: str, example: int,
                  sequence_length: int | None = None) -> tuple[torch.Tensor, str]:
    """(bp, 4) one-hot of example ``example`` (by position) of a Basenji2-layout folder's ``split``, at
    ``sequence_length`` (default: as stored), and its label."""
    from ..data.basenji import BasenjiDataset
    from ..errors import UserError

    dataset = BasenjiDataset(data, split, sequence_length=sequence_length, max_examples=example + 1)
    examples = list(dataset)
    if len(examples) <= example:
        raise UserError(f"example {example} is not in {data} split {split!r}: it has {len(examples)} examples "
                        f"(0 to {len(examples) - 1})")
    chosen = examples[example]
    return chosen["sequence"].float(), f"{split} example {example} {chosen.get('interval', '')}"


def run_attribution(
    out: str | os.PathLike,
    model: Enformer,
    sequence: torch.Tensor,
    *,
    name: str = "model",
    label: str = "",
    head: str = "human",
    tracks=None,
    targets=None,
    bins: list[int] | None = None,
    ism_width: int = 64,
    batch_size: int = 8,
    progress: bool = True,
    plain: bool = False,
) -> dict:
    """``senformer analyze attribution``: gradient x input over the whole input and ISM over ``ism_width`` bp
    around its centre, written into ``out``.

    Files: ``attribution.npz`` (``gradient_x_input`` (bp, 4), ``sequence`` (bp, 4) and, with ISM, ``ism``
    (width, 4), ``ism_start``), ``gradient_x_input_logo.png``, ``ism.png``, ``ism_logo.png`` and
    ``attribution.json``, the returned summary.

    Args:
        sequence: (bp, 4) one-hot (:func:`region_input`, :func:`example_input`) or (bp,) tokens.
        name, label: the model's and the input's names in the summary and the figures.
        tracks: ``--tracks`` values (:func:`senformer.data.tracks.select_tracks`); default every track.
        targets: names the head's tracks (:func:`senformer.data.tracks.head_track_table`).
        bins: output bins summed (default: the centre bin).
        plain: ISM through whole-window passes instead of the edit engine (``--plain``).
    """
    from ..io import save_figure, write_json, write_npz
    from ..plots import mutagenesis_heatmap, new_figure, sequence_logo
    from .common import chosen_tracks

    out = Path(out)
    sequence = as_one_hot(sequence)
    length = sequence.shape[0]
    if not 0 <= ism_width <= length:
        raise UserError(f"ISM width {ism_width:,} bp does not fit the {length:,} bp input (0 to {length:,})")
    _, chosen = chosen_tracks(model, head, tracks, targets)
    bins = list(bins) if bins is not None else [model.config.output_length(length) // 2]
    target = Target(head, chosen, bins)
    contributions = gradient_times_input(model, sequence, target)
    arrays = {"gradient_x_input": contributions, "sequence": sequence.numpy()}
    centre = length // 2
    window = (max(centre - ism_width // 2, 0), min(centre + (ism_width + 1) // 2, length))
    out.mkdir(parents=True, exist_ok=True)
    if ism_width > 0:
        effects = in_silico_mutagenesis(model, sequence, target, *window, batch_size=batch_size, progress=progress,
                                        plain=plain)
        arrays.update(ism=effects, ism_start=np.asarray(window[0]))
        figure = new_figure(9, 2.4)
        mutagenesis_heatmap(figure.subplots(), effects, window[0], f"ISM, {label}")
        save_figure(out / "ism.png", figure)
        figure = new_figure(9, 2.4)
        centred = effects - effects.mean(axis=1, keepdims=True)  # mean-centred per position, as in logos
        sequence_logo(figure.subplots(), centred, window[0], f"ISM (mean-centred), {label}")
        save_figure(out / "ism_logo.png", figure)
    write_npz(out / "attribution.npz", **arrays)
    figure = new_figure(9, 2.4)
    logo_window = slice(window[0], window[1]) if ism_width > 0 else slice(max(centre - 32, 0), centre + 32)
    sequence_logo(figure.subplots(), contributions[logo_window], logo_window.start, f"gradient x input, {label}")
    save_figure(out / "gradient_x_input_logo.png", figure)
    summary = {"model": name, "region": label, "head": head, "tracks": chosen, "bins": bins,
               "sequence_length": length, "ism_window": list(window)}
    write_json(out / "attribution.json", summary)
    return summary
