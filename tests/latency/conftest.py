import pytest
import torch
import torch.nn as nn

from graphprune.depgraph import build_dependency_graph
from graphprune.trace import trace


class TinyNet(nn.Module):
    """conv -> depthwise conv -> grouped conv -> pool -> linear: every kind of piece."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, padding=1)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.grouped = nn.Conv2d(24, 32, 1, groups=2)
        self.mid = nn.Conv2d(32, 16, 3, stride=2, padding="valid")
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.dw(x))
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.mid(x))
        return self.head(x.mean((2, 3)))


@pytest.fixture
def tiny():
    """(model, example input, dependency graph) of TinyNet at 16x16."""
    model, x = TinyNet().eval(), torch.randn(1, 3, 16, 16)
    return model, x, build_dependency_graph(trace(model, x))
