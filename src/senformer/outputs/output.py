"""``Output``: one result on disk, from the lock to the finish (see :mod:`senformer.outputs`)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import UserError
from . import faults, recipe, rule
from .locks import hold, lock_path
from .rule import DIRECTORY, FILE


class Output:
    """One output ``path`` (a ``kind`` of :data:`FILE` or :data:`DIRECTORY`) written by ``command``.

    Args:
        settings, inputs, paths: the run's settings, the digests of its input files, and the settings that
            are paths (counted through ``inputs``): :func:`senformer.outputs.recipe.fingerprint` of them is
            the fingerprint unless ``fingerprint`` is given; both go into the run record.
        device: recorded with the machine it ran on.
        overwrite: replace an output of other inputs (``--overwrite``).
        shard: a :class:`senformer.outputs.shards.Shard`: this process computes one part of the output
            (``--shard K/N``, ``torchrun``); the lock is then the part's, taken by the writer.
        grown: a folder grown in place, part by part (``train``'s run folder, a benchmark sweep, the demo):
            the lock and the run record only (:meth:`write_record`), no partial output; the writer's own
            rule says which parts are done.
        wait: wait for another holder of the lock instead of refusing (a cache several runs fill in turn).

    ``with output:`` takes ``OUT.lock`` and, when the fingerprint is known, applies the existing-output rule
    (:meth:`decide`); a caller that must first learn the fingerprint (the weights' identity of a loaded
    model) calls :meth:`decide` itself inside the block. Leaving the block on an error removes a partial
    output that holds no result yet; a write fault (:meth:`writing`) leaves a resumable ``OUT.partial``.
    """

    def __init__(self, path: str | os.PathLike, kind: str = FILE, *, command: str,
                 settings: Mapping[str, Any] | None = None, inputs: Mapping[str, Any] | None = None,
                 paths: tuple[str, ...] = (), device: Any = None, fingerprint: str | None = None,
                 overwrite: bool = False, shard=None, grown: bool = False, wait: bool = False):
        rule.check_kind(kind)
        self.grown, self.wait = grown, wait
        self.path, self.kind, self.command = Path(path), kind, command
        # A dataclass of settings (train's) is recorded as it is; a mapping less its callables.
        self.settings = recipe.settings_of(settings or {}) if isinstance(settings, Mapping) or not settings \
            else settings
        self.inputs = dict(inputs or {})
        self.paths, self.device, self.overwrite, self.shard = tuple(paths), device, overwrite, shard
        self._fingerprint = fingerprint
        self.plan: rule.OutputPlan | None = None
        self.record: dict[str, Any] = {}
        self.sharded = None  # a ShardedOutput while a shard computes its part
        self._stack: contextlib.ExitStack | None = None

    # The lock and the rule --------------------------------------------------------------------------------
    def __enter__(self) -> "Output":
        self._stack = contextlib.ExitStack()
        try:
            if self.shard is None:
                with faults.writing(lock_path(self.path), "the lock"):
                    self._stack.enter_context(hold(lock_path(self.path), owner=self.path, wait=self.wait))
                if not self.grown and (self._fingerprint is not None or self.settings or self.inputs):
                    self.decide()
            else:
                self._open_shards()
        except BaseException:
            self._stack.close()
            self._stack = None
            raise
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if error is not None and self.plan is not None:
                rule.drop_empty_partial(self.plan)
        finally:
            self._stack.close()
            self._stack = None
        # A write fault no writer named (a log line, a figure) still ends in one line naming the file.
        if isinstance(error, OSError) and error.errno in faults.WRITE_FAULTS or \
                isinstance(error, RuntimeError) and faults.is_io_error(error):
            raise faults.fault(getattr(error, "filename", None) or self.path, f"the {self.command} output",
                               error) from None

    @property
    def is_open(self) -> bool:
        """Whether the block holds the output (its lock, or its shard's split)."""
        return self._stack is not None

    def describe(self, fingerprint: str, *, settings: Mapping[str, Any] | None = None,
                 inputs: Mapping[str, Any] | None = None) -> "Output":
        """Name the fingerprint (and the record's settings and inputs) before the block: a library writer that
        learns them from its model; entering then applies the rule."""
        self._fingerprint = fingerprint
        if settings is not None:
            self.settings = recipe.settings_of(settings)
        if inputs is not None:
            self.inputs = dict(inputs)
        return self

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = recipe.fingerprint(self.command, self.settings, self.inputs, self.paths)
        return self._fingerprint

    def refuse_early(self) -> None:
        """Apply the parts of the rule that need no fingerprint (a path of the wrong kind, an output without
        a record, a folder senformer did not write) before the fingerprint is known: one line, nothing loaded."""
        found = rule.kind_of(self.path)
        if found is None or (found == DIRECTORY == self.kind and not any(self.path.iterdir())):
            return
        if found == DIRECTORY and rule.recorded_fingerprint(self.path, found) is None:
            raise UserError(f"{self.path} is a directory that senformer did not write (it has no {rule.RUN_RECORD}); "
                            "remove it or choose another output")
        if self.overwrite:
            return
        if found != self.kind:
            raise UserError(f"{self.path} is a {found}, but a {self.kind} is due there; pass --overwrite to replace it")
        if rule.recorded_fingerprint(self.path, found) is None:
            raise UserError(f"{self.path} exists without a run record; pass --overwrite to replace it")

    def records(self) -> list[dict | None]:
        """The run records of ``OUT``, ``OUT.partial`` and the parts of a split (None where absent): where a run looks up what an
        earlier run learnt (:func:`senformer.outputs.recipe.known_weights`)."""
        from .shards import shards_folder

        parts = sorted(shards_folder(self.path).glob(f"*.{rule.RUN_RECORD}"))
        return [rule.read_record(self.path, self.kind), rule.read_record(rule.partial_path(self.path), self.kind),
                *(rule.read_record(part.with_name(part.name[: -len(rule.RUN_RECORD) - 1]), FILE) for part in parts)]

    def decide(self, fingerprint: str | None = None, *, settings: Mapping[str, Any] | None = None,
               inputs: Mapping[str, Any] | None = None) -> "Output":
        """Apply the existing-output rule (holding the lock): up to date, refused, resumed or written anew."""
        from ..record import run_record

        if fingerprint is not None:
            self._fingerprint = fingerprint
        if settings is not None:
            self.settings = recipe.settings_of(settings)
        if inputs is not None:
            self.inputs = dict(inputs)
        self.plan = rule.plan_output(self.path, self.kind, self.fingerprint, self.overwrite)
        if self.plan.notice:
            self.say(self.plan.notice)
        self.record = run_record(self.command, self.settings, self.inputs, self.device, fingerprint=self.fingerprint)
        return self

    def say(self, line: str) -> None:
        print(f"senformer {self.command}: {line}", file=sys.stderr)

    def _open_shards(self) -> None:
        from ..record import run_record
        from .shards import ShardedOutput

        self.record = run_record(self.command, self.settings, self.inputs, self.device, fingerprint=self.fingerprint)
        self.sharded = ShardedOutput(self.command, self.path, self.fingerprint, self.record, self.shard,
                                     self.overwrite)
        self._sharded_up_to_date = self.sharded.open()

    # What the rule decided ---------------------------------------------------------------------------------
    def _decided(self) -> rule.OutputPlan:
        if self.plan is None:
            raise RuntimeError(f"{self.path}: the existing-output rule has not been applied (Output.decide)")
        return self.plan

    @property
    def up_to_date(self) -> bool:
        if self.shard is not None:
            return self._sharded_up_to_date
        return self._decided().up_to_date

    @property
    def resume(self) -> bool:
        return self._decided().resume

    @property
    def partial(self) -> Path:
        return rule.partial_path(self.path)

    @property
    def out(self) -> Path:
        return self.path

    # Writing -----------------------------------------------------------------------------------------------
    def start(self) -> Path:
        """``OUT.partial`` with its run record (a directory output: the folder), before the first result."""
        plan = self._decided()
        with self.writing("the run record"):
            if plan.resume:
                if plan.kind == DIRECTORY:
                    plan.partial.mkdir(parents=True, exist_ok=True)
                return plan.partial
            return rule.start_partial(plan, self.record)

    @contextlib.contextmanager
    def set_aside(self) -> Iterator[Path]:
        """The resumed ``OUT.partial`` (a file) moved aside for the block, while the writer writes ``OUT.partial``
        anew from what it holds: a format whose bytes depend on the file being closed and opened again (HDF5
        places what it adds after a reopen elsewhere) then resumes into the bytes of an uninterrupted run. The
        moved file is removed when the block ends; one a kill leaves behind, by the next run's rule."""
        plan = self._decided()
        if not plan.resume or plan.kind != FILE:
            raise RuntimeError(f"{plan.partial}: only a resumed partial file is set aside")
        aside = rule.resumed_aside(plan.partial)
        with self.writing("the resumed partial output"):
            os.replace(plan.partial, aside)
        try:
            yield aside
        finally:
            aside.unlink(missing_ok=True)

    def writing(self, what: str, path: str | os.PathLike | None = None):
        """A block writing ``what`` into the partial output: a write fault there is one line (exit 2)."""
        return faults.writing(path or self.partial, what)

    def finish(self, verify: Callable[[Path], None] | None = None, **resolved: Any) -> Path:
        """Move the complete ``OUT.partial`` onto ``OUT`` with the run record (``resolved`` added to its
        settings), after ``verify(partial)`` (which raises :class:`UserError` for a value that is not finite
        or a row that is missing) and after every byte is on the device."""
        plan = self._decided()
        if verify is not None:
            verify(plan.partial)
        record = {**self.record, "settings": {**self.record.get("settings", {}), **resolved}}
        with self.writing(f"the finished {self.command} output", self.path):
            return rule.finish_output(plan, record)

    # A shard's part ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def part(self, units: int):
        """This shard's part of an output of ``units`` units, held (its own lock and rule) for the block:
        a :class:`senformer.outputs.shards.Part` whose ``output`` the writer writes like any other."""
        part = self.sharded.part(units)
        with Output(part.path, FILE, command=self.command, fingerprint=part.fingerprint) as output:
            output.record = part.record
            part.output, part.done = output, output.up_to_date
            if not part.done and part.first == part.stop:  # more shards than units: an empty part
                output.start()
                output.partial.write_bytes(b"")
                output.finish()
                part.done = True
            yield part

    # A folder grown in place ------------------------------------------------------------------------------
    def recorded(self) -> dict | None:
        """``OUT``'s run record, None when there is none."""
        return rule.read_record(self.path, self.kind)

    def write_record(self) -> Path:
        """Write this run's record into the folder itself (with the fingerprint given, if any)."""
        from ..record import run_record

        record = run_record(self.command, self.settings, self.inputs, self.device, fingerprint=self._fingerprint)
        self.path.mkdir(parents=True, exist_ok=True)
        with self.writing("the run record", rule.record_path(self.path, self.kind)):
            return rule.write_record(rule.record_path(self.path, self.kind), record)

    def remove_record(self) -> None:
        """Remove ``OUT``'s run record: the folder no longer proves complete until it is written again."""
        rule.record_path(self.path, self.kind).unlink(missing_ok=True)


@contextlib.contextmanager
def opened(output: Output) -> Iterator[Output]:
    """``output`` inside its lock: entered here unless the caller already holds it (a command applied the rule
    before loading the model and hands the open output to a library writer)."""
    if output.is_open:
        yield output
        return
    with output:
        yield output
