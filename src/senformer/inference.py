"""Running a model over one-hot batches: the one place that calls a model's forward for predictions.

``predict``, ``evaluate``, the analyses and training's validation all go through :func:`predict_batch`
(or its streaming loop :func:`predict_batches`), so averaging, precision and devices mean the same thing
everywhere:

- heads and a track subset per head (columns kept per pass, before accumulating);
- reverse-complement averaging (the reverse strand's output flipped back along bins) and shift averaging
  (windows cut from an input carrying ``margin`` extra bp on each side);
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
) -> dict[str, torch.Tensor]:
    """Mean prediction of ``model`` over shifts and strands.

    Args:
        model: an Enformer (or a module with its call signature) in eval mode; the caller sets the mode.
        sequences: one-hot float ``(batch, L + 2 margin, 4)`` or integer tokens ``(batch, L + 2 margin)``:
            each input window with ``margin`` extra bp on each side, from which the shifted windows are cut.
        heads: heads to run (default: all the model's). ``tracks``: ``{head: int index array}``, the columns
            to keep of that head (default all), taken from each pass before accumulating.
        reverse_complement: also run the reverse complement of every window, flipped back along bins.
        shifts: window offsets in bp (``|shift| <= margin``); ``margin``: extra bp on each side of the input.
        bf16: bfloat16 autocast where ``device`` computes it natively (elsewhere a warning, once, and
            float32). ``device``: default the device of the model's parameters.
        embeddings: also return ``"embeddings"`` ``(batch, bins, 2 dim)``, averaged the same way.
        accumulate: dtype each pass's output is converted to before the passes are summed.
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
    columns = {name: torch.as_tensor(np.asarray(index, dtype=np.int64), device=device)
               for name, index in (tracks or {}).items()}
    sums: dict[str, torch.Tensor] = {}
    passes = 0
    with torch.inference_mode(), autocast_for(device, bf16):
        for shift in shifts:
            window = sequences[:, margin + shift : margin + shift + length].to(device)
            for flip in (False, True) if reverse_complement else (False,):
                outputs = model(_reverse_complement(window) if flip else window, heads=names, **extra)
                for name, value in outputs.items():
                    if name in columns:
                        value = value[..., columns[name]]
                    value = value.to(accumulate).flip(1) if flip else value.to(accumulate)
                    sums[name] = sums[name] + value if name in sums else value
                passes += 1
    return {name: (value / passes).cpu() for name, value in sums.items()}


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
