import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for the module (the CPUs are shared; more threads only contend)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
