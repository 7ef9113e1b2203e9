"""Odd cases added while sweeping."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from odd_case_base import ConvNet, convnet, img


# --- added while sweeping -------------------------------------------------------------------------------------
def torch_prune_l1():
    import torch.nn.utils.prune as tprune
    m = convnet()
    tprune.l1_unstructured(m.c1, "weight", amount=0.3)
    return m, img()


class Alias(ConvNet):
    def __init__(self):
        super().__init__()
        self.alias = self.c2  # one module under two names

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.alias(x)))
        return self.fc(x.mean((2, 3)))


class PermIndex(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1)
        self.register_buffer("perm", torch.randperm(16))
        self.c2 = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.c2(F.relu(self.c1(x))[:, self.perm])


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv1d(4, 16, 3, padding=1), nn.BatchNorm1d(16)
        self.c2 = nn.Conv1d(16, 8, 3, padding=1)

    def forward(self, x):
        return self.c2(F.relu(self.b1(self.c1(x))))


class CatBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c(F.relu(torch.cat([self.a(x), self.b(x)], 0)))


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1)
        self.dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16, padding_mode="reflect")
        self.c2 = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.c2(F.relu(self.dw(F.relu(self.c1(x)))))


class Unused(ConvNet):
    def __init__(self):
        super().__init__()
        self.spare = nn.Linear(16, 16)
        self.spare_p = nn.Parameter(torch.randn(16))


class BufferTied(nn.Module):
    """One (1, C, 1, 1) buffer object registered on two modules."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 16, 1), nn.Conv2d(16, 4, 1)
        shift = torch.randn(1, 16, 1, 1)
        self.c1.register_buffer("shift", shift)
        self.c2.register_buffer("shift", shift)

    def forward(self, x):
        y = F.relu(self.c1(x) + self.c1.shift)
        y = F.relu(self.c2(y) + self.c2.shift)
        return self.c3(y)



class ParamSlice(nn.Module):
    """Uses only part of a weight in forward: fc.weight[:, :8]."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = F.relu(self.c1(x)).mean((2, 3))
        return F.linear(y[:, :8], self.fc.weight[:, :8], self.fc.bias)


class LiteralZeros(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = F.relu(self.c1(x))
        pad = torch.ones(x.shape[0], 16, x.shape[2], x.shape[3])  # literal channel count
        return self.c2(y + pad)


class LiteralView(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1)
        self.l = nn.Linear(16, 4)

    def forward(self, x):
        y = F.relu(self.c1(x)).view(x.shape[0], 16, -1).mean(-1)  # literal channel count
        return self.l(y)


class PixelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.c2(F.pixel_shuffle(F.relu(self.c1(x)), 2))


class WeightOut(nn.Module):
    """Returns a penalty computed from a prunable weight next to the prediction."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.c2(F.relu(self.c1(x))), self.c1.weight.pow(2).sum()


class MatmulParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, 8) * 0.3)
        self.w2 = nn.Parameter(torch.randn(4, 16) * 0.3)

    def forward(self, x):
        return F.relu(x @ self.w1.t()) @ self.w2.t()
