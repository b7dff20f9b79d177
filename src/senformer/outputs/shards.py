"""One output computed by many processes: ``--shard K/N`` (job arrays) or ``torchrun`` ranks.

The work of a command is a sequence of *units* in output order, each a whole number of the batches a
single process would run (``predict``: consecutive regions whose windows fill whole batches;
``analyze variants``: windows). Shard ``K`` of ``N`` takes the units ``[K U / N, (K + 1) U / N)`` and writes
them, under the existing-output rule of :mod:`senformer.outputs.rule`, into its own part
``OUT.shards/part-K-of-N<suffix>``: the part has its own lock, its own ``OUT.partial``-style resume and its
own run record, whose fingerprint (the output's fingerprint with ``K/N``) is the part's done marker. Ranks
never wait on each other: each one, after its part, takes the short ``OUT.shards.lock`` and, when every part
is done, merges them into ``OUT`` under ``OUT``'s own lock (``OUT.partial`` renamed when complete) and
removes ``OUT.shards``. Whichever rank ends last merges; a rerun merges parts that were all done when a
merge was interrupted.

``OUT.shards/split.json`` names the output's fingerprint and ``N``. A rerun with the same inputs and ``N``
resumes every unfinished part; one with another ``N`` is refused in one line (its parts cover other unit
ranges); parts of other inputs are removed (none may be held by a running process).

Because units are whole batches of the single-process run and each unit's numbers depend only on its own
inputs, the merged output holds the same bytes as one process would write (``--threads 1`` makes the
kernels themselves deterministic across processes).

No process group is started under ``torchrun``: the ranks exchange nothing. ``RANK`` and ``WORLD_SIZE``
give ``K/N``, and ``LOCAL_RANK`` the GPU of a rank (``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import UserError
from ..fingerprint import value_digest
from ..io import write_json
from .locks import hold, output_lock
from .rule import FILE, finish_output, plan_output, record_path, recorded_fingerprint

SHARDS_SUFFIX = ".shards"
SPLIT_RECORD = "split.json"


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UserError(f"--shard {self.index}/{self.count}: K/N needs 0 <= K < N")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise UserError(f"--shard expects K/N (shard K of N, K from 0), got {text!r}")
        return cls(int(match[1]), int(match[2]))

    def bounds(self, units: int) -> tuple[int, int]:
        """The units ``[first, stop)`` of this shard; the shards of one ``count`` tile ``[0, units)``."""
        return units * self.index // self.count, units * (self.index + 1) // self.count

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def resolve_shard(option: str | None, environ: Mapping[str, str] = os.environ) -> Shard | None:
    """``--shard K/N``, else ``RANK/WORLD_SIZE`` under ``torchrun`` (``WORLD_SIZE`` > 1), else None (one process)."""
    given = Shard.parse(option) if option else None
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        ranked = Shard(int(environ.get("RANK", "0")), world)
        if given is not None and given != ranked:
            raise UserError(f"--shard {given} disagrees with torchrun's RANK/WORLD_SIZE {ranked}; give one of them")
        return ranked
    return given


def rank_device(device, environ: Mapping[str, str] = os.environ):
    """Under ``torchrun``, a CUDA device without an index becomes the rank's own GPU, ``cuda:LOCAL_RANK``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None and int(environ.get("WORLD_SIZE", "1") or 1) > 1:
        local = int(environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % max(torch.cuda.device_count(), 1))
    return device


def shards_folder(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + SHARDS_SUFFIX)


def output_suffix(out: str | os.PathLike) -> str:
    """The suffix a part keeps so that it is a file of the same format: ``.h5``, ``.tsv``, ``.tsv.gz``."""
    name = Path(out).name
    for suffix in (".tsv.gz", ".tsv", ".h5"):
        if name.lower().endswith(suffix):
            return name[len(name) - len(suffix):]
    return Path(out).suffix


# The sharded output -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Part:
    """Shard ``shard``'s part of an output: its file ``path``, its ``fingerprint`` (the done marker) and run
    ``record``, and its units ``[first, stop)``. While a shard computes it, ``output`` is the part's open
    :class:`senformer.outputs.Output` and ``done`` says it is complete (finished earlier, or a shard without
    units, whose part is an empty file)."""

    shard: Shard
    path: Path
    fingerprint: str
    record: dict[str, Any]
    first: int
    stop: int
    output: Any = None
    done: bool = False


class ShardedOutput:
    """``out`` written by shard ``shard`` with the others (module docstring).

    ``command`` names the command in messages; ``fingerprint`` and ``record`` are what a one-process run
    would give ``out`` (:class:`senformer.outputs.Output` builds it for ``--shard``).
    """

    def __init__(self, command: str, out: str | os.PathLike, fingerprint: str, record: Mapping[str, Any],
                 shard: Shard, overwrite: bool = False):
        self.command, self.out, self.fingerprint = command, Path(out), fingerprint
        self.record, self.shard, self.overwrite = dict(record), shard, overwrite
        self.folder = shards_folder(self.out)
        self.lock = self.folder.with_name(self.folder.name + ".lock")
        self.suffix = output_suffix(self.out)

    def part_path(self, index: int, count: int | None = None) -> Path:
        return self.folder / f"part-{index}-of-{count or self.shard.count}{self.suffix}"

    def part_fingerprint(self, index: int, count: int | None = None) -> str:
        return value_digest({"output": self.fingerprint, "shard": [index, count or self.shard.count]})

    def part_done(self, index: int, count: int | None = None) -> bool:
        """Part ``index`` of ``count`` (default: this split) is complete: its record is its done marker."""
        return recorded_fingerprint(self.part_path(index, count), FILE) == self.part_fingerprint(index, count)

    # Before any model is loaded ---------------------------------------------------------------------------
    def open(self) -> bool:
        """Apply the existing-output rule to ``out`` and check ``OUT.shards``; True when ``out`` is up to date.

        Raises one :class:`UserError` line for an ``out`` of other inputs (without ``--overwrite``) and for
        parts of this output split another number of ways.
        """
        with hold(self.lock, wait=True, remove=False):
            with output_lock(self.out):
                plan = plan_output(self.out, FILE, self.fingerprint, self.overwrite)
            if plan.notice:
                print(f"senformer {self.command}: {plan.notice}", file=sys.stderr)
            split = self._read_split()
            if plan.up_to_date:
                if split is not None and split.get("fingerprint") == self.fingerprint:
                    self._remove_folder()  # a merge that ended after renaming OUT, before removing the parts
                return True
            if split is not None and split.get("fingerprint") == self.fingerprint:
                count = int(split.get("count", 0))
                if count != self.shard.count:
                    # Its parts cover other unit ranges, and one may still be running: never mixed nor removed.
                    done = sum(self.part_done(index, count) for index in range(count))
                    raise UserError(
                        f"{self.folder} holds this output split {count} ways ({done} of its parts done), not "
                        f"{self.shard.count}: run its {count} shards (--shard K/{count} or torchrun "
                        f"--nproc_per_node {count}), or remove {self.folder}")
                return False
            if self.folder.exists():
                if split is not None or any(self.folder.iterdir()):
                    print(f"senformer {self.command}: {self.folder} was written from other inputs: starting it "
                          "again", file=sys.stderr)
                self._remove_folder()
            self.folder.mkdir(parents=True)
            write_json(self.folder / SPLIT_RECORD, {"fingerprint": self.fingerprint, "count": self.shard.count})
        return False

    def _read_split(self) -> dict | None:
        try:
            split = json.loads((self.folder / SPLIT_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return split if isinstance(split, dict) else None

    def _remove_folder(self) -> None:
        """Remove ``OUT.shards``, first taking the lock of every part in it: a part being written is never
        removed (its holder is named in one line instead)."""
        import shutil

        if not self.folder.is_dir():
            return
        with contextlib.ExitStack() as stack:
            for lock in sorted(self.folder.glob("*.lock")):
                stack.enter_context(output_lock(lock.with_name(lock.name[: -len(".lock")])))
            shutil.rmtree(self.folder)

    def refuse_stale_part(self, index: int, what: str) -> None:
        """Part ``index`` was computed from other genome bases than the genome gives now (``what`` says
        where): remove it (under its lock) so that its shard computes it again, and stop in one line."""
        path = self.part_path(index)
        with output_lock(path):
            path.unlink(missing_ok=True)
            record_path(path, FILE).unlink(missing_ok=True)
        raise UserError(f"{path}: {what} was computed from other bases than the genome gives now; the part is "
                        f"removed: run shard {index}/{self.shard.count} again")

    # This shard's part ------------------------------------------------------------------------------------
    def part(self, units: int) -> Part:
        """This shard's part of ``units`` units (held and written through ``Output.part``)."""
        first, stop = self.shard.bounds(units)
        fingerprint = self.part_fingerprint(self.shard.index)
        record = {**self.record, "fingerprint": fingerprint,
                  "shard": {"index": self.shard.index, "count": self.shard.count, "first_unit": first,
                            "stop_unit": stop, "units": units, "output_fingerprint": self.fingerprint}}
        return Part(self.shard, self.part_path(self.shard.index), fingerprint, record, first, stop)

    # Merging ----------------------------------------------------------------------------------------------
    def merge(self, merge_parts: Callable[[list[Path], list[dict], Path], Mapping[str, Any]]) -> Path | None:
        """When every part is done, merge them into ``out`` and remove ``OUT.shards``; returns ``out``, or
        None when parts are still missing (the rank that finishes the last one merges).

        ``merge_parts(parts, records, partial)`` writes ``OUT.partial`` from the parts in order and returns
        the settings to add to ``out``'s run record.
        """
        with hold(self.lock, wait=True, remove=False):
            missing = [index for index in range(self.shard.count) if not self.part_done(index)]
            if missing:
                if recorded_fingerprint(self.out, FILE) == self.fingerprint and not self.folder.exists():
                    return self.out  # another rank merged meanwhile
                return None
            with output_lock(self.out):
                plan = plan_output(self.out, FILE, self.fingerprint, self.overwrite)
                if plan.up_to_date:
                    return self.out
                parts = [self.part_path(index) for index in range(self.shard.count)]
                records = [json.loads(record_path(part, FILE).read_text(encoding="utf-8")) for part in parts]
                plan.partial.unlink(missing_ok=True)  # a merge is redone whole: it only copies
                try:
                    resolved = merge_parts(parts, records, plan.partial)
                except BaseException:
                    plan.partial.unlink(missing_ok=True)
                    raise
                record = {**self.record, "settings": {**self.record.get("settings", {}), **resolved},
                          "shards": self.shard.count}
                finish_output(plan, record)
            self._remove_folder()
            with contextlib.suppress(FileNotFoundError):
                self.lock.unlink()  # unlinked while held: a waiter wakes on the deleted file and opens anew
        return self.out


def refuse_split(out: str | os.PathLike, fingerprint: str) -> None:
    """A one-process run of ``out`` is refused in one line while ``OUT.shards`` holds this output split
    several ways: its finished parts cover other unit ranges, and a rank may still be writing one."""
    folder = shards_folder(out)
    try:
        split = json.loads((folder / SPLIT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(split, dict) and split.get("fingerprint") == fingerprint:
        count = split.get("count")
        raise UserError(f"{folder} holds this output split {count} ways: finish it with {count} shards (--shard K/"
                        f"{count} or torchrun --nproc_per_node {count}), or remove {folder}")


def unit_starts(sizes: Sequence[int], batch_size: int) -> list[int]:
    """Starts of the units of consecutive items whose ``sizes`` (windows per item) fill whole batches of
    ``batch_size``: a unit ends only where a batch of the one-process run ends with an item."""
    starts, windows = [0] if sizes else [], 0
    for index, size in enumerate(sizes[:-1]):
        windows += size
        if windows % batch_size == 0:
            starts.append(index + 1)
    return starts
