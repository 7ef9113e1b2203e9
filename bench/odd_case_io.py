"""Odd cases: inputs and outputs."""
from __future__ import annotations

import collections
import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from graphprune.testing import randomize_

from odd_case_base import ConvNet, MLP, img


# --- inputs / outputs ---------------------------------------------------------------------------------------
class DictIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = ConvNet()

    def forward(self, batch):
        return self.net(batch["image"]) + batch["bias"]


def dict_input():
    return randomize_(DictIn()).eval(), ({"image": img(), "bias": torch.randn(1, 10)},)


def dict_as_example_inputs():
    return randomize_(ConvNet()).eval(), {"x": img()}


class NestedIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = ConvNet()
        self.mlp = MLP(12, 16)

    def forward(self, pair):
        (a, b) = pair
        return self.net(a)[:, :5] + self.mlp(b)


def nested_tuple_input():
    return randomize_(NestedIn()).eval(), ((img(), torch.randn(1, 12)),)


class KwNet(ConvNet):
    def forward(self, x, scale=None, flag=True):
        y = super().forward(x)
        if scale is not None:
            y = y * scale
        return y if flag else -y


def kwargs_input():
    return randomize_(KwNet()).eval(), (img(), torch.tensor(2.0))


def none_argument():
    return randomize_(KwNet()).eval(), (img(), None, False)


def scalar_argument():
    return randomize_(KwNet()).eval(), (img(), 3.0)


class Tokens(nn.Module):
    def __init__(self, v=30, d=16):
        super().__init__()
        self.emb = nn.Embedding(v, d)
        self.l1, self.l2 = nn.Linear(d, 32), nn.Linear(32, 4)

    def forward(self, ids):
        return self.l2(F.relu(self.l1(self.emb(ids)))).mean(1)


def int_tokens():
    return Tokens().eval(), torch.randint(0, 30, (2, 7))


class BatchOnly(ConvNet):
    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3))).view(4, -1)  # bakes the batch size


def batch4_only():
    return randomize_(BatchOnly()).eval(), img(b=4)


class BatchStat(ConvNet):
    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = x - x.mean(0, keepdim=True)  # mixes batch items
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


def batch_mixing():
    return randomize_(BatchStat()).eval(), img(b=3)


class DictOut(ConvNet):
    def forward(self, x):
        f = F.relu(self.b1(self.c1(x)))
        g = F.relu(self.b2(self.c2(f)))
        return {"logits": self.fc(g.mean((2, 3))), "feat": g}


def dict_output():
    return randomize_(DictOut()).eval(), img()


Out = collections.namedtuple("Out", "logits feat")


class NTOut(ConvNet):
    def forward(self, x):
        f = F.relu(self.b1(self.c1(x)))
        g = F.relu(self.b2(self.c2(f)))
        return Out(self.fc(g.mean((2, 3))), g)


def namedtuple_output():
    return randomize_(NTOut()).eval(), img()


@dataclasses.dataclass
class DCOut:
    logits: torch.Tensor
    feat: torch.Tensor


class DCNet(ConvNet):
    def forward(self, x):
        f = F.relu(self.b1(self.c1(x)))
        g = F.relu(self.b2(self.c2(f)))
        return DCOut(self.fc(g.mean((2, 3))), g)


def dataclass_output():
    return randomize_(DCNet()).eval(), img()
