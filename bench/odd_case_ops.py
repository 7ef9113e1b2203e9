"""Odd cases: ops that touch channels."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from graphprune.testing import randomize_

from odd_case_base import ConvNet, img


# --- ops ----------------------------------------------------------------------------------------------------
class InPlace(ConvNet):
    def forward(self, x):
        y = self.b1(self.c1(x))
        y.relu_()
        z = self.b2(self.c2(y))
        z += y
        z = z.masked_fill_(z > 2.0, 0.0)
        return self.fc(z.mean((2, 3)))


def in_place_ops():
    return randomize_(InPlace()).eval(), img()


class RawParams(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, 3, 3, 3) * 0.3)
        self.b1 = nn.Parameter(torch.randn(16) * 0.1)
        self.w2 = nn.Parameter(torch.randn(16, 16, 3, 3) * 0.1)
        self.lw = nn.Parameter(torch.randn(10, 16) * 0.2)

    def forward(self, x):
        x = F.relu(F.conv2d(x, self.w1, self.b1, padding=1))
        x = F.relu(F.conv2d(x, self.w2, padding=1))
        return F.linear(x.mean((2, 3)), self.lw)


def raw_functional():
    return RawParams().eval(), img()


class LayerScale(ConvNet):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(1, 16, 1, 1) + 0.5)

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = h + self.gamma * F.relu(self.b2(self.c2(h)))
        return self.fc(h.mean((2, 3)))


def layer_scale():
    return randomize_(LayerScale()).eval(), img()


class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.c3 = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        x = F.relu(self.c1(x))
        b, c, h, w = x.shape
        x = x.view(b, 4, c // 4, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.c3(F.relu(self.c2(x)))


def channel_shuffle():
    return Shuffle().eval(), img()


def channel_shuffle_builtin():
    class S(Shuffle):
        def forward(self, x):
            return self.c3(F.relu(self.c2(F.channel_shuffle(F.relu(self.c1(x)), 4))))
    return S().eval(), img()


class CatSplit(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 12, 1)
        self.c, self.d = nn.Conv2d(10, 4, 1), nn.Conv2d(10, 4, 1)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1)
        u, v = torch.split(y, 10, 1)
        return self.c(u) + self.d(v)


def cat_split():
    return CatSplit().eval(), img()


class CatChunk(CatSplit):
    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1)
        u, v = y.chunk(2, 1)
        return self.c(u) + self.d(v)


def cat_chunk():
    return CatChunk().eval(), img()


class ViewMix(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.c1(x))
        return self.fc(x.reshape(x.shape[0], -1))


def view_flatten():
    return ViewMix().eval(), img(h=4)


class ViewScramble(nn.Module):
    """A reshape that mixes channels with spatial dims (not a flatten)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = F.relu(self.c1(x))  # (1, 8, 4, 4)
        y = y.reshape(1, 4, 8, 4).transpose(1, 2).reshape(1, 8, 4, 4)
        return self.c2(y)


def view_scramble():
    return ViewScramble().eval(), img(h=4)


class PermuteLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.l = nn.Linear(8, 6)

    def forward(self, x):
        return self.l(F.relu(self.c1(x)).permute(0, 2, 3, 1))


def permute_linear():
    return PermuteLinear().eval(), img(h=4)


class Einsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.w = nn.Parameter(torch.randn(8, 6))

    def forward(self, x):
        return torch.einsum("bchw,cd->bdhw", F.relu(self.c1(x)), self.w)


def einsum():
    return Einsum().eval(), img(h=4)


class IndexChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.c2 = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        y = F.relu(self.c1(x))
        return y[:, 2:5] * 2 + self.c2(x)[:, :3]


def index_channels():
    return IndexChannels().eval(), img(h=4)


class SumChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        y = F.relu(self.c1(x))
        return y.sum(1, keepdim=True) + y.max(1, keepdim=True).values


def reduce_over_channels():
    return SumChannels().eval(), img(h=4)


class SoftmaxChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c2(F.relu(self.c1(x)).softmax(1))


def softmax_over_channels():
    return SoftmaxChannels().eval(), img(h=4)


class NormOverChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c2(F.normalize(F.relu(self.c1(x)), dim=1))


def l2_normalize_channels():
    return NormOverChannels().eval(), img(h=4)


class GNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.c2 = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        return self.c2(F.relu(self.gn(self.c1(x))))


def group_norm():
    return randomize_(GNNet()).eval(), img()


class InstanceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.n = nn.InstanceNorm2d(16, affine=True)
        self.c2 = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        return self.c2(F.relu(self.n(self.c1(x))))


def instance_norm():
    return InstanceNet().eval(), img()


class ConvT(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.t = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c2(F.relu(self.t(F.relu(self.c1(x)))))


def conv_transpose():
    return ConvT().eval(), img()


class Rnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.l0 = nn.Linear(6, 16)
        self.rnn = nn.LSTM(16, 12, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        y, _ = self.rnn(F.relu(self.l0(x)))
        return self.head(y[:, -1])


def lstm():
    return Rnn().eval(), torch.randn(2, 5, 6)


class PReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.act = nn.PReLU(16)
        self.c2 = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.c2(self.act(self.c1(x)))


def prelu():
    m = PReLUNet().eval()
    with torch.no_grad():
        m.act.weight.uniform_(-1, 1)
    return m, img()


class Bias1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(8, 16)
        self.bias = nn.Parameter(torch.randn(16))
        self.l2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.l2(F.relu(self.l1(x) + self.bias))


def raw_bias_vector():
    return Bias1d().eval(), torch.randn(3, 8)


class GlobalBuffer(nn.Module):
    """A buffer indexed by a channel count read in forward (x.shape[1])."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1)
        self.register_buffer("table", torch.randn(64))
        self.c2 = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = F.relu(self.c1(x))
        return self.c2(y * self.table[: y.shape[1]].view(1, -1, 1, 1))


def size_read_buffer():
    return GlobalBuffer().eval(), img(h=4)


class Seq(nn.Sequential):
    pass


def sequential_subclass():
    return Seq(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Flatten(),
               nn.LazyLinear(4)).eval(), img()


def sequential_plain():
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(inplace=True), nn.Conv2d(16, 16, 3), nn.ReLU(inplace=True),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    return m, img()


def nothing_prunable():
    return nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()).eval(), img()


def no_params():
    return nn.Sequential(nn.ReLU(), nn.Flatten()).eval(), img()
