import os
import sys
from pathlib import Path

from senformer.threads import quiet_openmp, usable_cores  # noqa: E402 - imports no torch

# Before torch loads OpenMP: idle threads sleep instead of spinning, as the command line does. Two test workers
# on two cores, each with a thread per core, otherwise spin on the cores the other needs
# (tests/analysis/test_variants.py beside other jobs: 215 s spinning, 11 s sleeping).
quiet_openmp()
# And split the cores between the workers (make test: -n 2 on 2 cores), for each worker's torch and every
# command a test starts: 2 workers x 2 threads on 2 cores only trade time slices. A value the caller set is kept.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // _WORKERS)))

import pytest  # noqa: E402
import torch  # noqa: E402

# Only where torch was loaded before the variable was set: an explicit set_num_threads(n) computes other float
# bits than n threads from the environment (measured: a training run), and the commands tests start get theirs
# from the environment.
if _WORKERS > 1 and torch.get_num_threads() != int(os.environ["OMP_NUM_THREADS"]):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
THREADS = torch.get_num_threads()  # this process's own count, restored after every test

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import SHARED  # noqa: E402


@pytest.fixture(autouse=True)
def _threads_restored():
    """A command run in-process with --threads N (the demo's module fixture: 2) leaves torch at N threads;
    the worker's next test starts from its own count again."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the shared reference folder sits beside the clone in CI)")
    return SHARED


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)
