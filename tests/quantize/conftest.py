import pytest
import torch
from quant_nets import SmallConvNet, small_net


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Torch on one thread for the module (the CPUs are shared; more threads only contend)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def net() -> SmallConvNet:
    return small_net()


@pytest.fixture
def calib() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 1, 12, 12, generator=g) for _ in range(3)]
