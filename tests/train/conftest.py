import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Training tests run many tiny steps: on a shared 2-core machine two intra-op threads per process
    spin against each other (measured 40x slower per step under load), so these tests use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
