"""Training data: sources of examples per head, this rank's shard, augmentation and resumable batches.

A source yields dicts with ``sequence`` float32 (bp, 4), ``target`` float32 (bins, tracks) and ``index``
(the example's position in its split). Every epoch has a fixed order given by ``(seed, epoch)``, so a run
resumes by skipping the examples it already used (:class:`BatchStream`), and the augmentation of an example
depends only on ``(seed, epoch, index)``: resumed, sharded and single-process runs see identical inputs.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import torch

from ..data import augment as augmentations
from ..errors import UserError
from ..data.batch import iterate_batches, stack_examples


class ExampleSource(Protocol):
    num_tracks: int

    def examples(self, epoch: int, rank: int, world_size: int, shuffle: bool, limit: int | None) -> Iterable[dict]:
        """This rank's examples of one epoch; ``limit`` keeps the first examples of the split (before sharding)."""


class InMemoryExamples:
    """Examples held as tensors: sequences (n, bp, 4) float or (n, bp) tokens, targets (n, bins, tracks)."""

    def __init__(self, sequences: torch.Tensor, targets: torch.Tensor, seed: int = 0):
        if len(sequences) != len(targets):
            raise ValueError(f"{len(sequences)} sequences but {len(targets)} targets")
        if targets.dim() != 3:
            raise ValueError(f"targets must be (examples, bins, tracks), got {tuple(targets.shape)}")
        self.sequences = sequences
        self.targets = targets.float()
        self.seed = seed
        self.num_tracks = targets.shape[-1]

    def __len__(self) -> int:
        return len(self.sequences)

    def examples(self, epoch: int, rank: int = 0, world_size: int = 1, shuffle: bool = True, limit: int | None = None) -> Iterator[dict]:
        count = len(self) if limit is None else min(limit, len(self))
        if shuffle:
            generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
            order = torch.randperm(len(self), generator=generator)[:count]
        else:
            order = torch.arange(count)
        for index in order[rank::world_size].tolist():
            sequence = self.sequences[index]
            if not sequence.dtype.is_floating_point:
                from ..sequence import tokens_to_one_hot

                sequence = tokens_to_one_hot(sequence)
            yield {"sequence": sequence, "target": self.targets[index], "index": index}


class BasenjiSource:
    """A split of a Basenji2-layout directory through :class:`senformer.data.basenji.BasenjiDataset`;
    each epoch reshuffles (``set_epoch``) when ``shuffle_buffer`` is positive."""

    def __init__(self, directory: str | os.PathLike, split: str, genome: str | None = None,
                 sequence_length: int | None = None, shuffle_buffer: int = 0, seed: int = 0):
        from ..data.basenji import BasenjiDataset  # the data room; imported when a run needs it

        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"data directory {directory} does not exist")
        self.directory, self.split, self.genome = directory, split, genome
        self.sequence_length, self.shuffle_buffer, self.seed = sequence_length, shuffle_buffer, seed
        self._dataset_class = BasenjiDataset
        probe = self._dataset(epoch=0, rank=0, world_size=1, shuffle=False, limit=None)
        if len(probe) == 0:
            raise UserError(f"{directory}: split {split!r} holds no examples")
        self.num_tracks = probe.num_targets
        self.input_description = probe.input_description

    def _dataset(self, epoch: int, rank: int, world_size: int, shuffle: bool, limit: int | None):
        dataset = self._dataset_class(
            self.directory, self.split, genome=self.genome, sequence_length=self.sequence_length,
            shuffle_buffer=self.shuffle_buffer if shuffle else 0, seed=self.seed,
            rank=rank, world_size=world_size, max_examples=limit,
        )
        dataset.set_epoch(epoch)
        return dataset

    def examples(self, epoch: int, rank: int = 0, world_size: int = 1, shuffle: bool = True, limit: int | None = None) -> Iterator[dict]:
        for example in self._dataset(epoch, rank, world_size, shuffle, limit):
            yield {
                "sequence": torch.as_tensor(example["sequence"], dtype=torch.float32),
                "target": torch.as_tensor(example["target"], dtype=torch.float32),
                "index": int(example["index"]),
            }


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix-style), so nearby seeds and epochs give unrelated streams."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (int(value) + 0x9E3779B97F4A7C15 + (state << 6) + (state >> 2))) & 0xFFFFFFFFFFFFFFFF
        state = (state * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state & 0x7FFFFFFFFFFFFFFF


def augment(sequence: torch.Tensor, target: torch.Tensor, max_shift: int, reverse: bool, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random shift by ``-max_shift..max_shift`` bp (N padding) and, with probability 1/2 when ``reverse``,
    the reverse complement with the target reversed along bins (Basenji2 / Enformer training), drawn from
    ``generator`` (seeded per example by :class:`BatchStream`).

    Args:
        sequence: one-hot (bp, 4); target: (bins, tracks).
    """
    if max_shift:
        offset = int(torch.randint(-max_shift, max_shift + 1, (), generator=generator))
        sequence = augmentations.shift(sequence, offset)
    if reverse and bool(torch.rand((), generator=generator) < 0.5):
        sequence, target = augmentations.reverse_complement(sequence, target)
    return sequence, target


class BatchStream:
    """Endless batches of one head for one rank: epoch after epoch, resumable at ``(epoch, position)``.

    ``position`` counts this rank's examples already drawn in ``epoch``; a resumed stream skips them.
    """

    def __init__(self, source: ExampleSource, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, max_shift: int = 0, reverse: bool = False, limit: int | None = None,
                 epoch: int = 0, position: int = 0):
        self.source, self.batch_size = source, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.max_shift, self.reverse, self.limit = max_shift, reverse, limit
        self.epoch, self.position = epoch, position
        self._iterator: Iterator[dict] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._iterator = None

    def _open(self) -> Iterator[dict]:
        examples = self.source.examples(self.epoch, self.rank, self.world_size, shuffle=True, limit=self.limit)
        return itertools.islice(iter(examples), self.position, None)

    def _next_example(self) -> dict:
        for _ in range(2):
            if self._iterator is None:
                self._iterator = self._open()
            example = next(self._iterator, None)
            if example is not None:
                self.position += 1
                return example
            if self.position == 0:
                break
            self.epoch, self.position, self._iterator = self.epoch + 1, 0, None
        raise UserError(f"rank {self.rank} of {self.world_size} has no training examples (too few for the ranks?)")

    def next_batch(self) -> dict[str, Any]:
        """``{"sequence": (batch, bp, 4), "target": (batch, bins, tracks), "index": (batch,)}``."""
        examples = []
        for _ in range(self.batch_size):
            example = self._next_example()
            sequence, target = example["sequence"], example["target"]
            if self.max_shift or self.reverse:
                generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch, example["index"]))
                sequence, target = augment(sequence, target, self.max_shift, self.reverse, generator)
            examples.append({"sequence": sequence, "target": target, "index": example["index"]})
        return stack_examples(examples)


def eval_batches(source: ExampleSource, batch_size: int, rank: int, world_size: int, limit: int | None) -> Iterator[dict[str, Any]]:
    """This rank's share of the first ``limit`` examples of an evaluation split, in order, batched."""
    return iterate_batches(source.examples(0, rank, world_size, shuffle=False, limit=limit), batch_size)
