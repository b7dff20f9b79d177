"""Running a model over one-hot batches: the one place that calls a model's forward for predictions.

``predict``, ``evaluate``, the analyses and training's validation all go through :func:`predict_batch`
(or its streaming loop :func:`predict_batches`), so averaging, precision and devices mean the same thing
everywhere:

- heads and a track subset per head (columns kept per pass, before accumulating);
- reverse-complement averaging (the reverse strand's output flipped back along bins, and each stranded track
  taken from its other strand's output: Borzoi's + and - RNA and CAGE tracks exchange places on the reverse
  strand) and shift averaging (windows cut from an input carrying ``margin`` extra bp on each side);
- bfloat16 autocast where the device has it natively (float32 and one warning elsewhere), the device (the
  model's own by default);
- ``accumulate``: the dtype every pass's output is converted to before the passes are summed and divided
  by their number. float32 for predictions; float64 where a caller subtracts two predictions (variant,
  ISM and receptive-field differences), so the difference is taken in float64 from per-pass outputs.

Only this module, the training step, gradient x input (``analysis/attribution.py``) and ``bench/`` call a
model's forward.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .constants import MAX_SHIFT
from .device import use_bf16
from .errors import UserError
from .sequence import reverse_complement as _reverse_complement

# The forward and reverse-complement passes of a batch run as one model call while their joint batch is at most
# this: one window's two strands together (the batch a single window leaves half the machine idle without);
# a larger batch already fills the machine and would only double the activations' memory.
MAX_STRAND_BATCH = 2


# Input length ---------------------------------------------------------------------------------------------
def default_sequence_length(config) -> int:
    """The published input of ``config``'s family (196,608 bp; Borzoi's 524,288) when valid for it, else its
    shortest valid input."""
    published = config.published_sequence_length
    try:
        config.validate_sequence_length(published)
    except ValueError:
        return config.min_sequence_length()
    return published


def resolve_sequence_length(config, length: int | None) -> int:
    """``length`` checked against ``config`` (UserError naming it and the nearest valid lengths), or the
    default input length when ``None``."""
    if length is None:
        return default_sequence_length(config)
    try:
        config.validate_sequence_length(int(length))
    except ValueError as error:
        raise UserError(str(error)) from None
    return int(length)


# The model passes -----------------------------------------------------------------------------------------
def predict_batch(
    model: torch.nn.Module,
    sequences: torch.Tensor,
    *,
    heads: Sequence[str] | None = None,
    tracks: Mapping[str, Any] | None = None,
    reverse_complement: bool = False,
    shifts: Sequence[int] = (0,),
    margin: int = 0,
    bf16: bool = False,
    device: str | torch.device | None = None,
    embeddings: bool = False,
    accumulate: torch.dtype = torch.float32,
    strand_pairs: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean prediction of ``model`` over shifts and strands.

    Args:
        model: an Enformer (or a module with its call signature) in eval mode; the caller sets the mode.
        sequences: one-hot float ``(batch, L + 2 margin, 4)`` or integer tokens ``(batch, L + 2 margin)``:
            each input window with ``margin`` extra bp on each side, from which the shifted windows are cut.
        heads: heads to run (default: all the model's). ``tracks``: ``{head: int index array}``, the columns
            to keep of that head (default all), taken from each pass before accumulating.
        reverse_complement: also run the reverse complement of every window, flipped back along bins; a
            single window's two strands run as one batch of two (:data:`MAX_STRAND_BATCH`).
        shifts: window offsets in bp (``|shift| <= margin``); ``margin``: extra bp on each side of the input.
        bf16: bfloat16 autocast where ``device`` computes it natively (elsewhere a warning, once, and
            float32). ``device``: default the device of the model's parameters.
        embeddings: also return ``"embeddings"`` ``(batch, bins, 2 dim)``, averaged the same way.
        accumulate: dtype each pass's output is converted to before the passes are summed.
        strand_pairs: ``{head: (head tracks,) int array}``, the track of the other strand of each track (a
            track table's ``strand_pair``; itself when unstranded): a reverse-complement pass takes track
            ``i`` from its output's track ``strand_pairs[i]``, as calico does before averaging. Default
            :func:`model_strand_pairs` (the shipped Borzoi tables' pairs for published heads; none for
            Enformer, whose tracks are unstranded).
    Returns:
        ``{head: (batch, bins, tracks)}`` (plus ``"embeddings"``), CPU tensors of dtype ``accumulate``.
    """
    if model.training:
        raise ValueError("predict_batch needs the model in eval mode (call model.eval() first)")
    shifts = tuple(int(shift) for shift in shifts)
    if not shifts:
        raise UserError("shifts must hold at least one value (0 for no shift)")
    if max(abs(shift) for shift in shifts) > MAX_SHIFT:
        raise UserError(f"shift {max(shifts, key=abs)} bp is more than half a bin ({MAX_SHIFT} bp)")
    if margin < 0 or max(abs(shift) for shift in shifts) > margin:
        raise ValueError(f"shifts {shifts} need a margin of at least {max(abs(s) for s in shifts)} bp, got {margin}")
    parameter = next(model.parameters())
    device = parameter.device if device is None else torch.device(device)
    if sequences.dtype.is_floating_point:
        sequences = sequences.to(parameter.dtype)  # a float64 model takes float64 one-hot
    length = sequences.shape[1] - 2 * margin
    names = list(heads) if heads is not None else None
    extra = {"return_embeddings": True} if embeddings else {}
    columns, reverse_columns = pass_columns(model, tracks, strand_pairs, device)
    sums: dict[str, torch.Tensor] = {}
    passes = 0
    strands = (False, True) if reverse_complement else (False,)
    batch = sequences.shape[0]
    with torch.inference_mode(), autocast_for(device, bf16):
        for shift in shifts:
            window = sequences[:, margin + shift : margin + shift + length].to(device)
            inputs = [_reverse_complement(window) if flip else window for flip in strands]
            if len(inputs) > 1 and batch * len(inputs) <= MAX_STRAND_BATCH:
                # Both strands in one call: a single window keeps both cores busy as a batch of two does.
                outputs = model(torch.cat(inputs), heads=names, **extra)
                per_strand = [{name: value[index * batch : (index + 1) * batch] for name, value in outputs.items()}
                              for index in range(len(inputs))]
            else:
                per_strand = (model(strand, heads=names, **extra) for strand in inputs)
            for flip, outputs in zip(strands, per_strand):
                add_pass(sums, outputs, reverse_columns if flip else columns, flip, accumulate)
                passes += 1
    return {name: (value / passes).cpu() for name, value in sums.items()}


def pass_columns(model, tracks: Mapping[str, Any] | None, strand_pairs: Mapping[str, Any] | None,
                 device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(forward, reverse): ``{head: column index}`` to take from a forward and from a reverse-complement pass.

    Forward: the chosen ``tracks`` (a head not named keeps every column). Reverse: the same tracks read from
    their strand pair's column, ``pairs[chosen]``; a head without stranded tracks reads the forward columns.
    """
    pairs = model_strand_pairs(model) if strand_pairs is None else dict(strand_pairs)
    forward = {name: np.array(index, dtype=np.int64) for name, index in (tracks or {}).items()}  # own, writable copies
    reverse = dict(forward)
    for name, pair in pairs.items():
        pair = np.array(pair, dtype=np.int64)
        if pair.ndim != 1 or (np.sort(pair) != np.arange(len(pair))).any():
            raise ValueError(f"strand pairs of head {name} must reorder its {len(pair)} tracks, got {pair}")
        if (pair != np.arange(len(pair))).any():
            reverse[name] = pair[forward[name]] if name in forward else pair
    return ({name: torch.as_tensor(index, device=device) for name, index in forward.items()},
            {name: torch.as_tensor(index, device=device) for name, index in reverse.items()})


def add_pass(sums: dict[str, torch.Tensor], outputs: Mapping[str, torch.Tensor], columns: Mapping[str, torch.Tensor],
             flip: bool, accumulate: torch.dtype) -> None:
    """Add one pass's ``outputs`` (``{name: (batch, bins, channels)}``) to ``sums``: its ``columns`` taken,
    converted to ``accumulate``, flipped back along bins when the pass ran the reverse complement."""
    for name, value in outputs.items():
        if name in columns:
            value = value[..., columns[name]]
        value = value.to(accumulate).flip(1) if flip else value.to(accumulate)
        sums[name] = sums[name] + value if name in sums else value


def model_strand_pairs(model) -> dict[str, np.ndarray]:
    """``{head: (tracks,) strand pairs}`` of the heads of ``model`` whose shipped track table
    (:func:`senformer.data.tracks.head_track_table`) has stranded tracks: a published Borzoi head's."""
    from .data.tracks import shipped_strand_pairs

    heads = model.config.output_heads
    pairs = {head: shipped_strand_pairs(head, count) for head, count in heads.items()}
    return {head: pair for head, pair in pairs.items() if pair is not None}


def head_strand_pairs(model, tables: Mapping[str, Any], where: Any = None) -> dict[str, np.ndarray]:
    """``{head: strand pairs}`` for the reverse-complement passes (``predict_batch``'s ``strand_pairs``): a
    table's own ``strand_pair`` column where it has one (a ``--targets`` file, a dataset's ``targets.txt``),
    else the model's shipped table's (:func:`model_strand_pairs`).

    Args:
        tables: ``{head: track table}`` (:func:`senformer.data.tracks.head_track_table`), row ``i`` = track ``i``.
        where: the tables' file, named in errors.
    Raises:
        UserError: a ``strand_pair`` column that is no self-inverse permutation of the rows (one line naming
            ``where`` and the row).
    """
    from .data.tracks import strand_pairs

    pairs = model_strand_pairs(model)
    for head, table in tables.items():
        if "strand_pair" in table.columns:
            own = strand_pairs(table, where)
            if own is None:
                pairs.pop(head, None)
            else:
                pairs[head] = own
    return pairs


def predict_batches(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, Any]],
    *,
    key: str = "sequence",
    progress: bool = False,
    desc: str = "predict",
    total: int | None = None,
    **options: Any,
) -> Iterator[tuple[Mapping[str, Any], dict[str, torch.Tensor]]]:
    """``(batch, predict_batch(model, batch[key], **options))`` for each batch, with a progress bar
    counting examples (``total`` examples when known)."""
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="example", desc=desc, disable=not progress) as bar:
        for batch in batches:
            sequences = batch[key]
            yield batch, predict_batch(model, sequences, **options)
            bar.update(len(sequences))


def autocast_for(device: torch.device, bf16: bool):
    """The precision context every model pass runs under: bf16 autocast on ``device`` when ``bf16`` is asked
    for and the device computes it natively, else nothing (float32)."""
    # Emulated bfloat16 (a CPU without AVX512-BF16 or AMX) is far slower than float32 and no more
    # accurate: there use_bf16 warns once and the passes run in float32.
    if not use_bf16(bf16, device):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
