"""Threads come from the cores free now; OpenMP is told to sleep before torch loads it."""

import os
import subprocess
import sys

from senformer.threads import free_cores


def test_free_cores_are_the_usable_ones_less_the_load():
    assert free_cores(usable=2, load=0.2) == 2
    assert free_cores(usable=2, load=1.0) == 1  # one other CPU-bound job
    assert free_cores(usable=2, load=6.5) == 1  # never fewer than one
    assert free_cores(usable=16, load=3.4) == 13
    assert 1 <= free_cores() <= len(os.sched_getaffinity(0))


def test_the_command_line_asks_openmp_to_sleep_unless_told_otherwise():
    probe = ("import os, sys; from senformer.threads import quiet_openmp; quiet_openmp(); "
             "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["PASSIVE", "False"]
    run = subprocess.run([sys.executable, "-c", probe], env={**environment, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["ACTIVE", "False"]
