import os
import sys
from pathlib import Path

# Before torch loads OpenMP: idle threads sleep instead of spinning. Two test workers on two cores, each with
# a thread per core, otherwise spin on the cores the other needs (tests/analysis/test_variants.py beside other
# jobs: 215 s spinning, 11 s sleeping; as the command line does, senformer.threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import SHARED  # noqa: E402


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
