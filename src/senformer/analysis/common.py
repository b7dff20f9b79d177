"""Pieces shared by the analyses: the tracks a command explains, and the model's head."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from ..data.tracks import head_track_table, select_tracks
from ..errors import UserError


def default_tracks(groups: Sequence[str]) -> list[int]:
    """The first track of each assay group, in group order of appearance (Figure 7's four types)."""
    chosen: dict[str, int] = {}
    for position, group in enumerate(groups):
        chosen.setdefault(str(group), position)
    return list(chosen.values())


def head_tracks(model: torch.nn.Module, head: str) -> int:
    """Tracks of ``head`` in ``model``; a UserError naming the model's heads when it has no such head."""
    heads = model.config.output_heads
    if head not in heads:
        raise UserError(f"the model has no head {head!r}; it has {', '.join(heads)}")
    return heads[head]


def chosen_tracks(model: torch.nn.Module, head: str, values, targets=None) -> tuple[pd.DataFrame, list[int] | None]:
    """The head's track table (:func:`senformer.data.tracks.head_track_table`) and the positions ``values``
    select in it (the ``--tracks`` grammar); ``None`` positions when no values are given (every track)."""
    table = head_track_table(head, head_tracks(model, head), targets)
    if not values:
        return table, None
    return table, select_tracks(values, table, head).tolist()
