"""Pieces shared by the analyses: batching a dataset, running models, resolving tracks."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import UserError


def iterate_batches(dataset: Iterable[dict], batch_size: int, max_examples: int | None = None) -> Iterator[dict]:
    """Group a dataset of example dicts (``sequence`` (bp, 4), ``target`` (bins, tracks), ``index``,
    ``interval``) into batches: tensors stacked on a new first axis, other values as lists."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    pending: list[dict] = []
    seen = 0
    for example in dataset:
        if max_examples is not None and seen >= max_examples:
            break
        pending.append(example)
        seen += 1
        if len(pending) == batch_size:
            yield _stack(pending)
            pending = []
    if pending:
        yield _stack(pending)


def _stack(examples: list[dict]) -> dict:
    batch: dict = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        else:
            batch[key] = values
    return batch


@torch.no_grad()
def predict(model: torch.nn.Module, sequence: torch.Tensor, head: str) -> torch.Tensor:
    """(batch, bp, 4) one-hot or (batch, bp) tokens -> (batch, bins, tracks) float32 on the CPU."""
    device = next(model.parameters()).device
    return model(sequence.to(device), heads=[head])[head].float().cpu()


def resolve_tracks(specs: Sequence[str | int], table: pd.DataFrame) -> list[int]:
    """Track positions for ``specs``: an integer index, an identifier (e.g. ``ENCFF833POA``) or an exact
    description (``CAGE:brain``). ``table`` has the columns ``index``, ``identifier``, ``description``
    in head order."""
    resolved: list[int] = []
    identifiers = {str(name): position for position, name in enumerate(table["identifier"])}
    descriptions: dict[str, int] = {}
    for position, description in enumerate(table["description"]):
        descriptions.setdefault(str(description), position)
    for spec in specs:
        text = str(spec).strip()
        if text.lstrip("-").isdigit():
            position = int(text)
            if not 0 <= position < len(table):
                raise UserError(f"track {position} is out of range: the head has {len(table)} tracks (0..{len(table) - 1})")
        elif text in identifiers:
            position = identifiers[text]
        elif text in descriptions:
            position = descriptions[text]
        else:
            raise UserError(
                f"track {text!r} is neither an index, an identifier nor a description of the {len(table)} tracks"
            )
        resolved.append(position)
    return resolved


def default_tracks(groups: Sequence[str]) -> list[int]:
    """The first track of each assay group, in group order of appearance (Figure 7's four types)."""
    chosen: dict[str, int] = {}
    for position, group in enumerate(groups):
        chosen.setdefault(str(group), position)
    return list(chosen.values())


def load_track_table(head: str, num_tracks: int, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Columns ``index, identifier, description, assay_group`` for ``num_tracks`` tracks of ``head``:
    from ``DATA/targets.txt`` when present (a Basenji2 or synthetic directory), else the shipped table;
    a generic table (group ``all``) when neither matches ``num_tracks``."""
    from ..data import tracks as track_tables

    table = None
    targets = Path(data_dir) / "targets.txt" if data_dir is not None else None
    if targets is not None and targets.is_file():
        table = track_tables.read_targets(targets)
        if "genome" in table.columns and table["genome"].nunique() > 1:
            genome = 0 if head == "human" else 1
            table = table[table["genome"] == genome]
        table = track_tables.track_table(head, targets=table.reset_index(drop=True))
    elif head in ("human", "mouse"):
        table = track_tables.track_table(head)
    if table is None or len(table) != num_tracks:
        table = pd.DataFrame({
            "index": np.arange(num_tracks),
            "identifier": [f"track{i}" for i in range(num_tracks)],
            "description": [f"track {i}" for i in range(num_tracks)],
            "assay_group": ["all"] * num_tracks,
        })
    for column in ("identifier", "description"):
        if column not in table.columns:
            table[column] = [f"track {i}" for i in range(len(table))]
    return table.reset_index(drop=True)
