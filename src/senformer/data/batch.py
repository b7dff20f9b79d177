"""Stacking examples into batches: the one batch stacker, for the datasets' DataLoaders, training, evaluation
and inference (below all of them, so that data/ needs nothing from above)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch


def stack_examples(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One batch from example dicts (also a DataLoader ``collate_fn``): tensors and numpy arrays stacked on
    a new first axis as tensors, ``index`` as a LongTensor ``(batch,)``, any other value as a list."""
    if not examples:
        raise ValueError("no examples to stack")
    batch: dict[str, Any] = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(first, np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        elif key == "index":
            batch[key] = torch.tensor([int(value) for value in values], dtype=torch.long)
        else:
            batch[key] = values
    return batch


def iterate_batches(dataset: Iterable[Mapping[str, Any]], batch_size: int,
                    max_examples: int | None = None) -> Iterator[dict[str, Any]]:
    """Batches of ``batch_size`` examples (the last may be shorter) from the first ``max_examples``
    examples of ``dataset`` (all when ``None``), stacked by :func:`stack_examples`."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    pending: list[Mapping[str, Any]] = []
    seen = 0
    for example in dataset:
        if max_examples is not None and seen >= max_examples:
            break
        pending.append(example)
        seen += 1
        if len(pending) == batch_size:
            yield stack_examples(pending)
            pending = []
    if pending:
        yield stack_examples(pending)
