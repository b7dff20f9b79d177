"""Run one measurement in a fresh subprocess under a hard resident-memory cap.

The parent watches the child's resident set (RSS, the child and its descendants, from ``/proc`` or psutil)
and kills the whole process group the moment it passes the cap, so a point that does not fit is recorded
as out of memory instead of taking the machine down. An address-space limit (``RLIMIT_AS``) is no use with
PyTorch: its allocator and thread pools reserve far more virtual memory than they touch, so it fails points
that would fit. Polling can miss a spike shorter than the interval (or all of it on a busy machine); the
child's own kernel high-water mark (``VmHWM``, returned in its result by :func:`child_main`) catches it
afterwards, and a point whose peak passed the cap counts as out of memory either way.

Protocol: ``python -m MODULE PAYLOAD.json RESULT.json``; the module reads the payload, writes a JSON result
atomically, and exits 0, or :data:`OOM_EXIT_CODE` when an allocation failed (:func:`child_main` does all
three). This is the one capped runner: every benchmark measures its points through :func:`run_isolated`.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import UserError

OOM_EXIT_CODE = 75
"""Exit status of a child whose allocation failed (CPU allocator or CUDA out of memory)."""

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class CappedRun:
    """How a capped subprocess ended.

    ``status``: ``ok``; ``oom`` (killed at the cap, its own allocation failed, or its peak passed the cap);
    ``timeout``; or ``error`` (any other failure; ``stderr_tail`` says why).
    """

    status: str
    returncode: int | None
    peak_rss_bytes: int
    memory_cap_bytes: int
    wall_seconds: float
    stderr_tail: str = ""
    result: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def process_tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 once it has exited)."""
    if Path("/proc").is_dir():
        return _proc_tree_rss(pid)
    try:
        import psutil
    except ImportError as error:  # pragma: no cover - non-Linux without psutil
        raise RuntimeError("watching memory needs /proc (Linux) or the psutil package") from error
    try:  # pragma: no cover - exercised only off Linux
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
        return sum(member.memory_info().rss for member in members if member.is_running())
    except psutil.NoSuchProcess:  # pragma: no cover
        return 0


def _proc_tree_rss(pid: int) -> int:
    total, pending, seen = 0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/statm", encoding="ascii") as handle:
                total += int(handle.read().split()[1]) * _PAGE_SIZE
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as handle:
                    pending.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited between the listing and the read
    return total


def run_capped(
    command: list[str],
    memory_cap_bytes: int,
    timeout_s: float | None = None,
    poll_interval_s: float = 0.02,
    env: dict[str, str] | None = None,
) -> CappedRun:
    """Run ``command``, killing its process group when its RSS passes ``memory_cap_bytes`` or time runs out."""
    if memory_cap_bytes <= 0:
        raise ValueError(f"memory cap must be positive, got {memory_cap_bytes} bytes")
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        child = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True
        )
        peak, killed_for = 0, None
        try:
            while child.poll() is None:
                rss = process_tree_rss(child.pid)
                peak = max(peak, rss)
                if rss > memory_cap_bytes:
                    killed_for = "oom"
                elif timeout_s is not None and time.perf_counter() - start > timeout_s:
                    killed_for = "timeout"
                if killed_for:
                    _kill_group(child)
                    break
                time.sleep(poll_interval_s)
        except BaseException:
            _kill_group(child)
            child.wait()
            raise
        child.wait()
        wall = time.perf_counter() - start
        stderr.seek(0)
        tail = stderr.read()[-4000:].decode("utf-8", errors="replace")
    if killed_for:
        status = killed_for
    elif child.returncode == 0:
        status = "ok"
    elif child.returncode == OOM_EXIT_CODE or child.returncode == -signal.SIGKILL:
        status = "oom"  # its allocator failed, or the kernel's OOM killer ended it
    else:
        status = "error"
    return CappedRun(status, child.returncode, peak, memory_cap_bytes, wall, tail)


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_isolated(
    module: str,
    payload: dict[str, Any],
    memory_cap_bytes: int,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
) -> CappedRun:
    """Run ``python -m module PAYLOAD RESULT`` under the cap; ``result`` holds what the child wrote.

    The child's own ``peak_rss_bytes`` (kernel high-water mark) raises the parent's sampled peak; a peak over
    the cap turns an ``ok`` into ``oom``.
    """
    with tempfile.TemporaryDirectory(prefix="senformer-point-") as scratch:
        payload_path = Path(scratch) / "payload.json"
        result_path = Path(scratch) / "result.json"
        payload_path.write_text(json.dumps(payload), encoding="utf-8")
        run = run_capped(
            [sys.executable, "-m", module, str(payload_path), str(result_path)], memory_cap_bytes, timeout_s, env=env
        )
        if result_path.exists():
            run.result = json.loads(result_path.read_text(encoding="utf-8"))
    if run.result is not None:
        run.peak_rss_bytes = max(run.peak_rss_bytes, int(run.result.get("peak_rss_bytes", 0)))
    if run.status == "ok" and run.peak_rss_bytes > memory_cap_bytes:
        run.status = "oom"
    return run


def child_main(measure: Callable[[dict[str, Any]], dict[str, Any]], argv: Sequence[str]) -> int:
    """The child's side of :func:`run_isolated`: read ``PAYLOAD``, write ``measure(payload)`` to ``RESULT``.

    An allocation failure is written as ``{"error": ...}`` with exit status :data:`OOM_EXIT_CODE`, so the
    parent records the point as out of memory; any other exception ends the child with its traceback on
    stderr (the parent records an error). The result carries this process's ``peak_rss_bytes`` unless the
    measurement reported its own.
    """
    from ..io import atomic_write_text

    payload_path, result_path = argv
    payload = json.loads(Path(payload_path).read_text(encoding="utf-8"))
    try:
        result = measure(payload)
    except Exception as error:  # noqa: BLE001 - re-raised unless it is an allocation failure
        if not is_out_of_memory(error):
            raise
        atomic_write_text(result_path, json.dumps({"error": str(error)[:2000], "peak_rss_bytes": own_peak_rss_bytes()}))
        return OOM_EXIT_CODE
    result.setdefault("peak_rss_bytes", own_peak_rss_bytes())
    atomic_write_text(result_path, json.dumps(result))
    return 0


def time_steps(step: Callable[[], None], device: str, warmup: int = 1, repeats: int = 1) -> dict[str, Any]:
    """Run ``step`` ``warmup`` times untimed, then ``repeats`` times timed: the median and each time, and the
    peak memory above the level before the first step (CPU: resident high-water mark; CUDA: allocated)."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = own_rss_bytes()
    times = []
    for index in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if index >= warmup:  # the first passes warm up allocators and kernels
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else own_peak_rss_bytes()
    return {"median_s": statistics.median(times), "times_s": times, "peak_memory_mb": max(peak - baseline, 0) / 2**20,
            "memory_measure": "cuda_max_allocated" if cuda else "peak_rss_delta"}


def own_peak_rss_bytes() -> int:
    """This process's resident high-water mark.

    On Linux the high-water mark of its own address space (``VmHWM``): ``ru_maxrss`` also holds the RSS of
    the parent that started it (exec records the replaced address space's peak, and a child runs in a copy
    of its parent's until then), so a small child of a large process would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


def own_rss_bytes() -> int:
    """This process's current resident set."""
    return process_tree_rss(os.getpid()) if Path("/proc").is_dir() else own_peak_rss_bytes()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CPU allocator or CUDA)."""
    if isinstance(error, MemoryError):
        return True
    try:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def saved_tensor_bytes(function, *inputs) -> int:
    """Bytes autograd keeps for backward while running ``function(*inputs)``: the distinct storages its
    graph saves (a tensor saved by several operations counts once). Exact and independent of the allocator,
    unlike a resident-memory peak, which also holds transient buffers and memory the allocator retains."""
    import torch

    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function(*inputs)
    return sum(storages.values())


# What a sweep records of each point --------------------------------------------------------------------------
def now() -> str:
    """UTC time stamp of a record."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages, recorded beside each point (timings under load are not comparable)."""
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None


def point_record(point, status: str, memory_cap_bytes: int, **extra: Any) -> dict:
    """The record of one point of a sweep: its key and settings (a dataclass with ``key``), status, cap, time."""
    return {"key": point.key, **asdict(point), "status": status, "memory_cap_bytes": memory_cap_bytes,
            "recorded": now(), **extra}


def replace_point(document: dict, record: dict) -> None:
    """Put ``record`` (a :func:`point_record`) in ``document["points"]``, last, instead of any with its key."""
    document["points"] = [r for r in document["points"] if r["key"] != record["key"]] + [record]


def failure_fields(run: CappedRun, result: dict, memory_cap_bytes: int) -> dict:
    """``reason`` (and ``stderr_tail``) of a point whose child did not end ``ok``: over the memory cap, killed by
    the system for memory, or the child's last error line."""
    if run.status == "oom":
        return {"reason": result.get("error") or (
            f"resident memory passed the cap of {memory_cap_bytes / 1e9:.1f} GB"
            if run.peak_rss_bytes > memory_cap_bytes else "killed by the system (out of memory)")}
    lines = run.stderr_tail.strip().splitlines()
    return {"reason": lines[-1] if lines else f"{run.status} (exit status {run.returncode})",
            "stderr_tail": run.stderr_tail[-2000:]}


def read_points(path: Path, benchmark: str, point_type, what: str, keys_must_match: bool) -> dict:
    """The record of a resumable sweep at ``path`` (``{"benchmark", "runs", "matmul", "points"}``), or a new one.

    A file that is not JSON, has no ``points`` list or names another benchmark, or holds a point that
    ``point_type.from_record`` cannot rebuild (with ``keys_must_match``: whose settings give another key) is
    one :class:`UserError` naming the file and the point: nothing is resumed from a record that does not prove
    its settings.
    """
    if not path.exists():
        return {"benchmark": benchmark, "runs": [], "matmul": [], "points": []}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}); move it away to start afresh") from None
    if not isinstance(document, dict) or not isinstance(document.get("points"), list) or \
            document.get("benchmark", benchmark) != benchmark:
        raise UserError(f"{path} is not a {what} result (no 'points' list of {benchmark!r})")
    for index, record in enumerate(document["points"]):
        try:
            if point_type.from_record(record).key != record.get("key") and keys_must_match:
                raise ValueError("its key does not match its settings")
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{path}: point {index} is not a {what} point ({error})") from None
    return document
