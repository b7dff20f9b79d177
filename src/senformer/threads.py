"""How many CPU threads torch runs, chosen from the cores that are free now, and how idle threads wait.

On a machine others share, torch's default (one thread per core, each spinning while it waits for work)
loses most of its time to the other processes: a thread that holds a core another process needs spins
instead of sleeping, and every parallel region waits for the slowest thread. On the 2-core development
machine at load average 4-5, a tiny model's conv1d took 3.8 ms with 2 spinning threads, 0.19 ms with 2
sleeping ones (``OMP_WAIT_POLICY=PASSIVE``) and 0.25 ms with one thread (a relative measurement beside
other jobs, for diagnosis only). So (1) the command line asks OpenMP to sleep, not spin, before torch loads it,
and (2) the demo, whose results are read at a few digits, runs as many threads as there are cores free: the
cores this process may use less the load average. Other commands keep torch's count unless ``--threads``:
the count changes a float32 output's last bits, and an output must not depend on the machine's load.

This module does not import torch: the command line calls :func:`quiet_openmp` before any command loads it.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def quiet_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the environment
    says otherwise. OpenMP reads it once, when torch loads it: after ``import torch`` this changes nothing."""
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a cgroup or ``taskset`` limit counts)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def free_cores(usable: int | None = None, load: float | None = None) -> int:
    """Cores not taken by other work: ``usable`` (default :func:`usable_cores`) less the one-minute load
    average ``load`` (default ``os.getloadavg()``), rounded, at least 1 and at most ``usable``."""
    usable = usable_cores() if usable is None else usable
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(usable, round(usable - load)))


def choose_threads(requested: int | None = None) -> int:
    """Set torch's CPU threads to ``requested``, or else to :func:`free_cores`; returns the number set."""
    import torch

    threads = requested if requested is not None else free_cores()
    torch.set_num_threads(threads)
    return threads
