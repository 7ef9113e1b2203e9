"""Shared pieces of the odd cases (``bench/odd_cases.py``): ``Case``, inputs, the small ConvNet and MLP."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from graphprune.testing import randomize_


@dataclass
class Case:
    name: str
    what: str
    make: Callable
    budget: object = 0.5
    onnx: bool = True
    prune_kw: dict = field(default_factory=dict)

    def build(self):
        out = self.make()
        model, x = out[0], out[1]
        call_kw = out[2] if len(out) > 2 else {}
        x = x if isinstance(x, tuple) else (x,)
        g = torch.Generator().manual_seed(1)

        def other(t):
            if not isinstance(t, torch.Tensor):
                return t
            if t.is_floating_point():
                return torch.randn(t.shape, generator=g).to(t.dtype).to(memory_format=_fmt(t))
            return torch.randint(0, int(t.max()) + 1, t.shape, generator=g).to(t.dtype)
        return model, x, tuple(other(t) for t in x), dict(self.prune_kw), call_kw


def _fmt(t):
    return torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format


def img(c=3, h=8, b=1):
    return torch.randn(b, c, h, h)


class ConvNet(nn.Module):
    def __init__(self, c=3, w=16):
        super().__init__()
        self.c1 = nn.Conv2d(c, w, 3, padding=1)
        self.b1 = nn.BatchNorm2d(w)
        self.c2 = nn.Conv2d(w, w, 3, padding=1)
        self.b2 = nn.BatchNorm2d(w)
        self.fc = nn.Linear(w, 10)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


class MLP(nn.Module):
    def __init__(self, d=12, h=32):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(d, h), nn.Linear(h, h), nn.Linear(h, 5)

    def forward(self, x):
        return self.l3(F.relu(self.l2(F.relu(self.l1(x)))))


def convnet():
    return randomize_(ConvNet()).eval()
