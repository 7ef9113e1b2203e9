import pytest

from graphprune.data import synthetic


@pytest.fixture(scope="session")
def tiny_data():
    """32 Gaussian-blob images, 1×8×8: enough for 1–2 steps of any learner."""
    return synthetic(32, shape=(1, 8, 8))
