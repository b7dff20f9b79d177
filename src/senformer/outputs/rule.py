"""The existing-output rule, the partial output and the finish: the steps :class:`senformer.outputs.Output` runs.

Every result has a run record (:mod:`senformer.record`) whose ``fingerprint`` is one SHA-256 of everything
the result depends on (:mod:`senformer.outputs.recipe`). The record lies at ``OUT/run.json`` for a directory
and at ``OUT.run.json`` beside a file. A run writes into ``OUT.partial`` (a file or directory of the same
kind, its record at ``OUT.partial.run.json`` or ``OUT.partial/run.json``, written by :func:`start_partial`
before the first result), and :func:`finish_output` moves it onto ``OUT`` with ``OUT``'s record, so a record
with a fingerprint proves that its output is complete and from those inputs. Then (:func:`plan_output`):

- ``OUT`` complete, recorded fingerprint equal to this run's: "up to date" (``--overwrite`` computes it again).
- ``OUT`` with another fingerprint or none, or a path of the wrong kind: refused with one line unless
  ``--overwrite``. A non-empty directory without a run record is never replaced: senformer did not write it.
  An empty directory where a directory is due counts as absent.
- ``OUT.partial`` with this run's fingerprint: the run resumes it.
- ``OUT.partial`` with another fingerprint or none: deleted, with one line saying so, and written anew.
The old ``OUT`` stays in place until the new one is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from ..io import json_text
from .faults import fsync_path, fsync_tree

FILE, DIRECTORY = "file", "directory"
RUN_RECORD = "run.json"
PARTIAL_SUFFIX = ".partial"
UP_TO_DATE, WRITE, RESUME = "up to date", "write", "resume"


def partial_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def resumed_aside(partial: Path) -> Path:
    """Where :meth:`senformer.outputs.Output.set_aside` moves a resumed partial file while it is written anew."""
    return partial.with_name(f".{partial.name}.resumed-{os.getpid()}")


def record_path(out: str | os.PathLike, kind: str) -> Path:
    """Where the run record of ``out`` lies: ``OUT/run.json`` for a directory, ``OUT.run.json`` for a file."""
    out = Path(out)
    check_kind(kind)
    return out / RUN_RECORD if kind == DIRECTORY else out.with_name(f"{out.name}.{RUN_RECORD}")


def read_record(out: str | os.PathLike, kind: str) -> dict | None:
    """``out``'s run record; None when there is no readable one."""
    try:
        record = json.loads(record_path(out, kind).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_fingerprint(out: str | os.PathLike, kind: str) -> str | None:
    """The ``fingerprint`` in ``out``'s run record; None when there is no readable record or no fingerprint."""
    record = read_record(out, kind)
    value = record.get("fingerprint") if record is not None else None
    return value if isinstance(value, str) else None


def refuse_unfinished(path: str | os.PathLike, what: str) -> None:
    """Refuse to read ``path`` as an input when it is a senformer output that was never finished: an
    ``OUT.partial`` (its rows or records may be missing), or a missing ``OUT`` whose ``OUT.partial`` exists.
    One :class:`UserError` line naming ``what`` and the fix (rerun the command that writes it)."""
    path = Path(path)
    if path.name.endswith(PARTIAL_SUFFIX) and kind_of(path) is not None:
        finished = path.with_name(path.name[: -len(PARTIAL_SUFFIX)])
        raise UserError(f"{what} {path} is an unfinished senformer output; run the command that writes {finished} "
                        "again to finish it, then read that")
    partial = partial_path(path)
    if kind_of(path) is None and kind_of(partial) is not None:
        raise UserError(f"{what} {path} does not exist: only its unfinished {partial} does; run the command that "
                        f"writes {path} again to finish it")


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write a run record atomically and durably (the record is the proof that its output is complete)."""
    path = Path(path)
    _durable_write(path, json_text(record) + "\n")
    return path


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """What a run does with ``out``: ``action`` is ``"up to date"``, ``"write"`` or ``"resume"``.

    ``partial`` is where the run writes; ``notice`` is one line for the user (a replaced partial) or None.
    """

    out: Path
    kind: str
    fingerprint: str
    action: str
    partial: Path
    notice: str | None = None

    @property
    def up_to_date(self) -> bool:
        return self.action == UP_TO_DATE

    @property
    def resume(self) -> bool:
        return self.action == RESUME


def plan_output(out: str | os.PathLike, kind: str, fingerprint: str, overwrite: bool = False) -> OutputPlan:
    """Apply the existing-output rule (module docstring) to ``out``; call it holding ``OUT.lock``.

    Raises :class:`UserError` (one line) when ``out`` must not be replaced; deletes a partial output of
    other inputs, and the leftovers of an interrupted replacement or resume.
    """
    out, partial = Path(out), partial_path(out)
    check_kind(kind)
    for leftover in [*out.parent.glob(f".{out.name}.replaced-*"), *out.parent.glob(f".{partial.name}.resumed-*")]:
        remove(leftover)
    _complete_interrupted_finish(out, kind)
    found = kind_of(out)
    if found is not None and not (found == DIRECTORY == kind and not any(out.iterdir())):
        recorded = recorded_fingerprint(out, found)
        if found == kind and recorded == fingerprint and not overwrite:
            return OutputPlan(out, kind, fingerprint, UP_TO_DATE, partial)
        if found == DIRECTORY and recorded is None:
            raise UserError(f"{out} is a directory that senformer did not write (it has no {RUN_RECORD}); "
                            "remove it or choose another output")
        if not overwrite:
            if found != kind:
                reason = f"is a {found}, but a {kind} is due there"
            elif recorded is None:
                reason = "exists without a run record"
            else:
                reason = f"was written from other inputs (fingerprint {recorded[:12]}, this run {fingerprint[:12]})"
            raise UserError(f"{out} {reason}; pass --overwrite to replace it")
    notice = None
    found_partial = kind_of(partial)
    if found_partial is not None:
        recorded = recorded_fingerprint(partial, found_partial)
        if found_partial == kind and recorded == fingerprint:
            return OutputPlan(out, kind, fingerprint, RESUME, partial)
        if found_partial == DIRECTORY and recorded is None and any(partial.iterdir()):
            raise UserError(f"{partial} is a directory that senformer did not write (it has no {RUN_RECORD}); "
                            "remove it or choose another output")
        remove(partial)
        notice = f"{partial} was written from other inputs: starting it again"
    with contextlib.suppress(FileNotFoundError):
        record_path(partial, FILE).unlink()
    return OutputPlan(out, kind, fingerprint, WRITE, partial, notice)


def _complete_interrupted_finish(out: Path, kind: str) -> None:
    """A file's finish stages its record, then renames ``OUT.partial`` onto ``OUT``, then the record into
    place: a run killed between the two renames left ``OUT`` new and complete (no ``OUT.partial`` any more)
    with its staged record beside it, which is moved into place now; any other staged record is stale."""
    record = record_path(out, FILE)
    for staged in sorted(out.parent.glob(f".{record.name}.*{PARTIAL_SUFFIX}")):
        if kind == FILE and kind_of(out) == FILE and not record.exists() and kind_of(partial_path(out)) is None:
            os.replace(staged, record)
        else:
            staged.unlink(missing_ok=True)


def start_partial(plan: OutputPlan, record: Mapping[str, Any]) -> Path:
    """Create ``plan.partial``'s run record (with ``plan.fingerprint``) before the first result is written.

    For a directory output this also creates the ``OUT.partial`` directory. Returns ``plan.partial``.
    """
    record = {**record, "fingerprint": plan.fingerprint}
    if plan.kind == DIRECTORY:
        plan.partial.mkdir(parents=True, exist_ok=True)
    write_record(record_path(plan.partial, plan.kind), record)
    return plan.partial


def finish_output(plan: OutputPlan, record: Mapping[str, Any]) -> Path:
    """Move the complete ``plan.partial`` onto ``plan.out`` with its run record; returns ``out``.

    Everything that needs room on the device (the new record, the data flushed to it) is done first: a
    fault there leaves ``OUT.partial`` as it was and ``OUT`` untouched. Then only renames and unlinks, each
    step leaving either the old output or the new one, with a record only where the output is complete.
    """
    out, partial = plan.out, plan.partial
    record = {**record, "fingerprint": plan.fingerprint}
    fsync_tree(partial)
    found = kind_of(out)
    if plan.kind == DIRECTORY:
        write_record(partial / RUN_RECORD, record)  # the directory is complete once renamed
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                record_path(out, found).unlink()  # a kill after this point leaves no record of the old content
            aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            os.replace(out, aside)
            os.replace(partial, out)
            remove(aside)
        else:
            os.replace(partial, out)
        fsync_path(out.parent)
        return out
    staged = _staged_record(record_path(out, FILE), record)
    try:
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                record_path(out, found).unlink()
        if found == DIRECTORY:
            aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            os.replace(out, aside)
            remove(aside)
        os.replace(partial, out)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    # Stopped here, the staged record stays beside the new OUT, and the next run moves it into place.
    os.replace(staged, record_path(out, FILE))
    with contextlib.suppress(FileNotFoundError):
        record_path(partial, FILE).unlink()
    fsync_path(out.parent)
    return out


def move_into_place(built: Path, destination: Path) -> Path:
    """Move a complete file or folder (a verified download, a copied snapshot) onto ``destination``, replacing
    an older one: the one rename outside :func:`finish_output` for things that are not results."""
    built, destination = Path(built), Path(destination)
    if destination.is_dir() and not destination.is_symlink() and built.is_dir():
        remove(destination)
    os.replace(built, destination)
    return destination


def drop_empty_partial(plan: OutputPlan) -> None:
    """A run that failed before writing any result leaves no ``OUT.partial`` (only its record would be there)."""
    if plan.resume or plan.up_to_date:
        return
    if plan.kind == DIRECTORY and plan.partial.is_dir():
        if [p.name for p in plan.partial.iterdir()] == [RUN_RECORD]:
            (plan.partial / RUN_RECORD).unlink()
            plan.partial.rmdir()
    elif plan.kind == FILE and not plan.partial.exists():
        record_path(plan.partial, FILE).unlink(missing_ok=True)


def _durable_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = _staged_text(path, text)
    try:
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def _staged_record(path: Path, record: Mapping[str, Any]) -> Path:
    return _staged_text(path, json_text(record) + "\n")


def _staged_text(path: Path, text: str) -> Path:
    """``text`` in a flushed temporary file beside ``path`` (renamed onto it by the caller)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    staged = Path(temporary)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        staged.chmod(0o666 & ~_umask())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_kind(kind: str) -> None:
    if kind not in (FILE, DIRECTORY):
        raise ValueError(f"output kind {kind!r} is not {FILE!r} or {DIRECTORY!r}")


def kind_of(path: Path) -> str | None:
    if path.is_dir():
        return DIRECTORY
    if path.exists() or path.is_symlink():
        return FILE
    return None


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
