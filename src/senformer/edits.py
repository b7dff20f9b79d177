"""The edit engine: predictions for many edits of one reference window, running the conv trunk once.

The stem and conv tower are local (:func:`senformer.model.tiling.conv_reach`: 259 bp left, 386 bp right),
about 2.55 of the 3.29 TFLOP of a 196,608-bp forward. An edit changes only the trunk positions within that
reach, so the engine computes the reference trunk once per pass (each shift, each strand), recomputes for
each edit only the positions it can change, and runs the patched trunks through the transformer and heads
(``Enformer.head_outputs``) in batches. Averaging over shifts and strands, track columns, bf16 autocast and
the ``accumulate`` dtype mean what they mean in :func:`senformer.inference.predict_batch`; the plain path
(``plain=True``) runs every edited window through ``predict_batch`` itself, for comparison and for the
commands' ``--plain``.

Exactness (tests/test_edits.py: max |engine - plain| <= 1e-10 max |plain| in float64) rests on:

- evaluation mode: BatchNorm uses its moving statistics, so a position never sees beyond the reach; the
  engine refuses a model in training mode or a BatchNorm without moving statistics;
- a recomputed span starts and ends on 128-bp boundaries, extends by ``halo_bins`` on each side and is
  clipped at the window's ends exactly as ``model/tiling.py`` tiles (:func:`~senformer.model.tiling.span_bounds`),
  so every pooling pairs the same positions and the convolutions' zero padding falls where it does in the
  whole pass;
- an edit that changes length shifts every base on its refilled side: all trunk positions from the edit to
  that end of the window are recomputed;
- the crop to ``target_length`` comes after the transformer, and bigbird's random blocks depend only on
  (seed, layer, heads, blocks), so neither cares how the trunk was computed.

Borzoi (:class:`senformer.model.borzoi.Borzoi`) runs the same way: its conv features are the tower's output
and the U-Net's two skips (64 and 32 bp), both local within the tower's reach, so the engine keeps them packed on
the tower's 128-bp grid (:meth:`~senformer.model.borzoi.Borzoi.packed_conv_trunk`: each skip's positions per
128 bp folded into channels), patches that one tensor like Enformer's trunk, and unpacks it for the
transformer, the U-Net decoder and the heads, which run per edit.

Edits (:class:`Edit`) are spelled in bases at a 0-based position of the unshifted window. The window keeps
its length: for a length change the bases on the ``refill`` side of the edit move, and that end of the window
is refilled from ``right_flank`` (``refill="right"``, the variant-centred convention) or ``left_flank``
(``refill="left"``, for windows anchored to the right of the edit).

    engine = EditEngine(model, reference_tokens, heads=["human"], reverse_complement=True,
                        accumulate=torch.float64)
    reference = engine.reference_output()                 # {head: (bins, tracks)}
    for edits, outputs in engine.score(edit_list):        # batches of batch_size edits
        ...                                               # outputs: {head: (len(edits), bins, tracks)}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .inference import add_pass, autocast_for, pass_columns, predict_batch
from .model.borzoi import Borzoi
from .model.tiling import affected_bins, conv_reach, halo_bins, span_bounds
from .sequence import one_hot as encode_bases
from .sequence import as_one_hot, one_hot_to_tokens, reverse_complement, tokens, tokens_to_bases

REFILL_SIDES = ("right", "left")


@dataclass(frozen=True)
class Edit:
    """Replace ``ref`` (the bases at 0-based ``position`` of the unshifted window) by ``alt``.

    SNV: one base each; MNV: equal lengths; indel: different lengths (either may be empty). For a length
    change the bases on the ``refill`` side move and that end of the window is refilled from the flank.
    """

    position: int
    ref: str
    alt: str
    refill: str = "right"

    def __post_init__(self) -> None:
        if self.refill not in REFILL_SIDES:
            raise ValueError(f"refill must be one of {', '.join(REFILL_SIDES)}, got {self.refill!r}")
        if not self.ref and not self.alt:
            raise ValueError(f"edit at {self.position} has neither ref nor alt bases")

    @property
    def changes_length(self) -> bool:
        return len(self.ref) != len(self.alt)

    def __str__(self) -> str:
        return f"{self.position}:{self.ref or '-'}>{self.alt or '-'}"


def changed_span(edit: Edit, margin: int, input_length: int) -> tuple[int, int]:
    """``[start, stop)`` in bp of the input (window plus margins) whose bases the edit can change."""
    start = margin + edit.position
    if not edit.changes_length:
        return start, start + len(edit.ref)
    if edit.refill == "right":
        return start, input_length
    return 0, start + len(edit.ref)


class EditEngine:
    """Predictions of ``model`` for edits of one reference window, sharing its conv trunk.

    Args:
        model: an Enformer or Borzoi in eval mode (refused otherwise: the shared trunk needs BatchNorm's
            moving statistics).
        reference: one-hot float ``(L + 2 margin, 4)`` or integer tokens ``(L + 2 margin,)``: the window
            with ``margin`` extra bp on each side, as one row of ``predict_batch``'s ``sequences``.
        heads, tracks, reverse_complement, shifts, margin, bf16, device, accumulate, strand_pairs: as in
            :func:`senformer.inference.predict_batch`.
        batch_size: edits per transformer batch.
        left_flank, right_flank: bases beyond the input on each side (one-hot or tokens, like ``reference``),
            read when a length change refills that side; a deletion of ``k`` bp needs ``k`` of them.
        plain: run every edited window whole through ``predict_batch`` instead (the comparison path).
    """

    def __init__(
        self,
        model: nn.Module,
        reference: torch.Tensor,
        *,
        heads: Sequence[str] | None = None,
        tracks: Mapping[str, Any] | None = None,
        reverse_complement: bool = False,
        shifts: Sequence[int] = (0,),
        margin: int = 0,
        bf16: bool = False,
        batch_size: int = 8,
        accumulate: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        left_flank: torch.Tensor | None = None,
        right_flank: torch.Tensor | None = None,
        plain: bool = False,
        strand_pairs: Mapping[str, Any] | None = None,
    ):
        check_evaluation_mode(model)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.shifts = tuple(int(shift) for shift in shifts)
        if not self.shifts:
            raise ValueError("shifts must hold at least one value (0 for no shift)")
        if margin < 0 or max(abs(shift) for shift in self.shifts) > margin:
            raise ValueError(f"shifts {self.shifts} need a margin of at least "
                             f"{max(abs(s) for s in self.shifts)} bp, got {margin}")
        self.model, self.margin, self.bf16, self.batch_size, self.plain = model, margin, bf16, batch_size, plain
        self.reverse_complement, self.accumulate = reverse_complement, accumulate
        self.heads = model.head_names(heads)
        self.tracks = dict(tracks or {})
        parameter = next(model.parameters())
        self.device = parameter.device if device is None else torch.device(device)
        dtype = parameter.dtype

        def flank(sequence: torch.Tensor | None, name: str) -> torch.Tensor:
            return torch.zeros(0, 4, dtype=dtype) if sequence is None else as_one_hot(sequence, dtype, name)

        window = as_one_hot(reference, dtype, "reference")
        self.input_length = window.shape[0]
        self.length = self.input_length - 2 * margin
        model.config.validate_sequence_length(self.length)
        left = flank(left_flank, "left_flank")
        self._offset = left.shape[0]  # where the input starts in the extended sequence
        self._extended = torch.cat([left, window, flank(right_flank, "right_flank")]).to(self.device)
        self._extended_tokens = one_hot_to_tokens(self._extended.cpu())
        self.strand_pairs = strand_pairs
        self._columns, self._reverse_columns = pass_columns(model, self.tracks, strand_pairs, self.device)
        self._bin_size = 2**model.config.num_poolings  # bp per trunk position (Borzoi's bins are finer)
        self._reach, self._halo = conv_reach(model), halo_bins(model)
        self._num_bins = self.length // self._bin_size
        self._reference_features: dict[tuple[int, bool], torch.Tensor] = {}

    # Passes ---------------------------------------------------------------------------------------------
    def _passes(self) -> list[tuple[int, bool]]:
        strands = (False, True) if self.reverse_complement else (False,)
        return [(shift, flip) for shift in self.shifts for flip in strands]  # predict_batch's order

    def _pass_window(self, sequence: torch.Tensor, shift: int, flip: bool) -> torch.Tensor:
        """(..., L + 2 margin, 4) input -> (..., L, 4) window the pass runs."""
        window = sequence[..., self.margin + shift : self.margin + shift + self.length, :]
        return reverse_complement(window) if flip else window

    def _features(self, shift: int, flip: bool) -> torch.Tensor:
        """(1, T, channels) reference conv-trunk features of one pass, computed once."""
        key = (shift, flip)
        if key not in self._reference_features:
            with torch.inference_mode(), autocast_for(self.device, self.bf16):
                window = self.model.prepare_input(self._pass_window(self.input(), shift, flip)[None])
                self._reference_features[key] = self._conv_trunk(window.transpose(1, 2)).transpose(1, 2)
        return self._reference_features[key]

    def _conv_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 4, bp) -> (batch, channels, bp / 128): Enformer's trunk, or Borzoi's tower with its skips
        packed beside it."""
        if isinstance(self.model, Borzoi):
            return self.model.packed_conv_trunk(x)
        return self.model.conv_trunk(x)

    def _head_outputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(batch, T, channels) features of :meth:`_conv_trunk` -> ``{head: (batch, bins, tracks)}``."""
        if isinstance(self.model, Borzoi):
            tower, skips = self.model.unpack(features.transpose(1, 2))
            return self.model.head_outputs((tower.transpose(1, 2), skips), self.heads)
        return self.model.head_outputs(features, self.heads)

    def _collect(self, outputs: dict[str, torch.Tensor], flip: bool, sums: dict[str, torch.Tensor]) -> None:
        add_pass(sums, outputs, self._reverse_columns if flip else self._columns, flip, self.accumulate)

    # Sequences ------------------------------------------------------------------------------------------
    def input(self) -> torch.Tensor:
        """(L + 2 margin, 4) the reference input, one-hot in the model's dtype on its device."""
        return self._extended[self._offset : self._offset + self.input_length]

    def validate(self, edit: Edit) -> None:
        """ValueError naming ``edit`` when its ref bases lie outside the input or differ from the reference
        there, or when its length change needs more flank than was given (cheap: callers can screen edits,
        e.g. a VCF's REF against the genome, before :meth:`score`)."""
        start = self._offset + self.margin + edit.position
        stop = start + len(edit.ref)
        if edit.position < -self.margin or edit.position + len(edit.ref) > self.length + self.margin:
            raise ValueError(f"edit {edit}: its ref bases lie outside the input ({self.length} bp "
                             f"+ {self.margin} bp margins)")
        expected = torch.from_numpy(tokens(edit.ref).astype(np.int64))
        observed = self._extended_tokens[start:stop]
        if not torch.equal(observed, expected):
            found = tokens_to_bases(observed)
            raise ValueError(f"edit {edit}: the reference has {found!r} there, not {edit.ref!r}")
        shortfall = len(edit.ref) - len(edit.alt)  # bp the refilled side pulls in from its flank
        available = (self._offset if edit.refill == "left"
                     else self._extended.shape[0] - self._offset - self.input_length)
        if shortfall > available:
            raise ValueError(f"edit {edit} deletes {shortfall} bp: the window needs {shortfall} bp of "
                             f"{edit.refill}_flank, got {available}")

    def edited_input(self, edit: Edit) -> torch.Tensor:
        """(L + 2 margin, 4) the input with ``edit`` applied (what the plain path runs); raises as
        :meth:`validate`."""
        self.validate(edit)
        start = self._offset + self.margin + edit.position
        alt = encode_bases(edit.alt, dtype=self._extended.dtype).to(self.device)
        edited = torch.cat([self._extended[:start], alt, self._extended[start + len(edit.ref):]])
        # The kept end stays where it was: the input starts at the same place (right refill) or ends at the
        # same place (left refill) of the extended sequence.
        first = self._offset if edit.refill == "right" else self._offset + len(edit.alt) - len(edit.ref)
        return edited[first : first + self.input_length]

    # Outputs --------------------------------------------------------------------------------------------
    def reference_output(self) -> dict[str, torch.Tensor]:
        """``{head: (bins, tracks)}`` of the reference, CPU tensors of dtype ``accumulate``."""
        if self.plain:
            return {name: value[0] for name, value in self._predict_plain(self.input()[None]).items()}
        sums: dict[str, torch.Tensor] = {}
        with torch.inference_mode(), autocast_for(self.device, self.bf16):
            for shift, flip in self._passes():
                self._collect(self._head_outputs(self._features(shift, flip)), flip, sums)
        passes = len(self._passes())
        return {name: (value / passes)[0].cpu() for name, value in sums.items()}

    def score(self, edits: Iterable[Edit]) -> Iterator[tuple[list[Edit], dict[str, torch.Tensor]]]:
        """``(batch of edits, {head: (batch, bins, tracks)})`` for successive batches of ``batch_size``
        edits, CPU tensors of dtype ``accumulate``, averaged over shifts and strands."""
        pending: list[Edit] = []
        for edit in edits:
            pending.append(edit)
            if len(pending) == self.batch_size:
                yield pending, self._score_batch(pending)
                pending = []
        if pending:
            yield pending, self._score_batch(pending)

    def score_all(self, edits: Iterable[Edit]) -> dict[str, torch.Tensor]:
        """``{head: (edits, bins, tracks)}`` for every edit (:meth:`score`, concatenated)."""
        parts = [outputs for _, outputs in self.score(edits)]
        if not parts:
            raise ValueError("no edits to score")
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _predict_plain(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return predict_batch(self.model, inputs, heads=self.heads, tracks=self.tracks,
                             reverse_complement=self.reverse_complement, shifts=self.shifts, margin=self.margin,
                             bf16=self.bf16, device=self.device, accumulate=self.accumulate,
                             strand_pairs=self.strand_pairs)

    def _score_batch(self, edits: list[Edit]) -> dict[str, torch.Tensor]:
        check_evaluation_mode(self.model)
        inputs = torch.stack([self.edited_input(edit) for edit in edits])  # (batch, L + 2 margin, 4)
        if self.plain:
            return self._predict_plain(inputs)
        sums: dict[str, torch.Tensor] = {}
        with torch.inference_mode(), autocast_for(self.device, self.bf16):
            for shift, flip in self._passes():
                features = self._features(shift, flip).expand(len(edits), -1, -1).clone()  # (batch, T, C)
                windows = self._pass_window(inputs, shift, flip)  # (batch, L, 4)
                self._patch(features, windows, [self._stale_bins(edit, shift, flip) for edit in edits])
                self._collect(self._head_outputs(features), flip, sums)
        passes = len(self._passes())
        return {name: (value / passes).cpu() for name, value in sums.items()}

    def _stale_bins(self, edit: Edit, shift: int, flip: bool) -> tuple[int, int]:
        """``[first, last)`` trunk positions of one pass the edit can change (empty: none)."""
        start, stop = changed_span(edit, self.margin, self.input_length)
        offset = self.margin + shift
        start, stop = max(start - offset, 0), min(stop - offset, self.length)  # in the pass's window
        if start >= stop:
            return 0, 0
        if flip:
            start, stop = self.length - stop, self.length - start
        return affected_bins(self._reach, start, stop, self._num_bins, self._bin_size)

    def _patch(self, features: torch.Tensor, windows: torch.Tensor, stale: list[tuple[int, int]]) -> None:
        """Overwrite each row's stale positions of ``features`` (batch, T, C) with the conv trunk of
        ``windows`` (batch, L, 4) over them; rows whose spans have the same length run as one batch."""
        groups: dict[int, list[tuple[int, int, int, int, int]]] = {}
        for row, (first, last) in enumerate(stale):
            if first == last:
                continue
            window_start, window_stop = span_bounds(self._num_bins, first, last, self._halo)
            groups.setdefault(window_stop - window_start, []).append((row, first, last, window_start, window_stop))
        bin_size = self._bin_size
        for spans in groups.values():
            pieces = torch.stack([windows[row, start * bin_size : stop * bin_size]
                                  for row, _, _, start, stop in spans])  # (group, span bp, 4)
            trunk = self._conv_trunk(pieces.transpose(1, 2)).transpose(1, 2)  # (group, span bins, C)
            for index, (row, first, last, start, _) in enumerate(spans):
                features[row, first:last] = trunk[index, first - start : last - start]


def check_evaluation_mode(model: nn.Module) -> None:
    """ValueError unless every module is in evaluation mode and every BatchNorm keeps moving statistics:
    the shared conv trunk is exact only when no position depends on the rest of the batch."""
    if any(module.training for module in model.modules()):
        raise ValueError("the edit engine needs the model in evaluation mode (call model.eval() first): "
                         "in training mode BatchNorm mixes positions through batch statistics")
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.track_running_stats:
            raise ValueError(f"the edit engine needs BatchNorm moving statistics; {name} has none")


# FLOPs ----------------------------------------------------------------------------------------------------
def edit_flops(
    config,
    length: int,
    edit: Edit | None = None,
    *,
    heads: Sequence[str] = ("human",),
    reverse_complement: bool = False,
) -> dict[str, float]:
    """Multiply-add FLOPs (:func:`senformer.model.flops.forward_flops`) of one edit through the engine
    against a whole-window forward, at batch 1, per edit (the reference trunk not counted); ``config`` of
    either family.

    The conv trunk's FLOPs are linear in its input, so a recomputed span of ``w`` of the ``T`` positions
    (stale positions plus the halo, as :class:`EditEngine` runs it) costs ``w / T`` of the whole trunk's.
    ``edit``: default an SNV at the window's centre. With ``reverse_complement`` both strands are counted.

    Returns:
        ``whole`` (a plain forward per pass), ``conv_trunk`` (its stem and conv tower), ``edit`` (the
        engine's), ``recomputed_positions`` (span positions, summed over passes) and ``bound``
        (``whole / edit``: the speed-up a FLOP-bound run could reach).
    """
    from .model.borzoi import build_model
    from .model.flops import forward_flops

    edit = edit if edit is not None else Edit(length // 2, "A", "C")
    with torch.device("meta"):  # the reach is read from the modules; no weights are needed
        convolutions = build_model(config.replace(depth=0))
    reach, halo = conv_reach(convolutions), halo_bins(convolutions)
    parts = forward_flops(config, length, heads)
    conv = parts["stem"] + parts["conv_tower"]  # Borzoi's skips are the tower's own outputs
    unit = 2**config.num_poolings  # bp per trunk position
    num_bins = length // unit
    start, stop = changed_span(edit, 0, length)
    spans = [(start, stop)] + ([(length - stop, length - start)] if reverse_complement else [])
    recomputed = 0
    for span_start, span_stop in spans:
        first, last = affected_bins(reach, span_start, span_stop, num_bins, unit)
        if first < last:
            window_start, window_stop = span_bounds(num_bins, first, last, halo)
            recomputed += window_stop - window_start
    passes = len(spans)
    whole = passes * parts["total"]
    engine = passes * (parts["total"] - conv) + conv * recomputed / num_bins
    return {"whole": whole, "conv_trunk": passes * conv, "edit": engine,
            "recomputed_positions": float(recomputed), "bound": whole / engine}
