"""Odd cases: parametrizations, sharing, hooks and wrappers, modes, dtypes and flags."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrizations as P

from graphprune.testing import randomize_

from odd_case_base import ConvNet, MLP, convnet, img


# --- parametrizations ---------------------------------------------------------------------------------------
def weight_norm_new():
    m = convnet()
    P.weight_norm(m.c1)
    P.weight_norm(m.c2)
    return m, img()


def spectral_norm_new():
    m = convnet()
    P.spectral_norm(m.c1)
    P.spectral_norm(m.fc)
    return m, img()


def orthogonal_new():
    m = MLP(16, 16).eval()
    P.orthogonal(m.l1)
    return m, torch.randn(2, 16)


def weight_norm_old():
    m = convnet()
    with torch.no_grad():
        pass
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn.utils.weight_norm(m.c1)
    return m, img()


def spectral_norm_old():
    m = convnet()
    nn.utils.spectral_norm(m.c1)
    return m, img()


class Scale2(nn.Module):
    def forward(self, w):
        return w * 2


def custom_parametrization():
    m = convnet()
    torch.nn.utils.parametrize.register_parametrization(m.c1, "weight", Scale2())
    return m, img()


# --- sharing ------------------------------------------------------------------------------------------------
class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 16, 3, padding=1)
        self.shared = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.relu(self.c0(x))
        x = F.relu(self.shared(x))
        x = F.relu(self.shared(x))
        return self.fc(x.mean((2, 3)))


class TiedLM(nn.Module):
    def __init__(self, v=50, d=16):
        super().__init__()
        self.emb = nn.Embedding(v, d)
        self.l1 = nn.Linear(d, 32)
        self.l2 = nn.Linear(32, d)
        self.out = nn.Linear(d, v, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        h = h + self.l2(F.gelu(self.l1(h)))
        return self.out(h)


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 12, 1)
        self.fc = nn.Linear(24, 3)

    def forward(self, x):
        u = self.shared(F.relu(self.a(x)))
        v = self.shared(F.relu(self.b(x)))
        return self.fc(torch.cat([u, v], 1).mean((2, 3)))


class SharedParam(nn.Module):
    """Two Linears holding one Parameter object (weight sharing without module reuse)."""

    def __init__(self):
        super().__init__()
        self.l0 = nn.Linear(8, 16)
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.b.weight = self.a.weight
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = F.relu(self.l0(x))
        return self.head(F.relu(self.b(F.relu(self.a(h)))))


# --- hooks and wrappers -------------------------------------------------------------------------------------
def forward_hook_changes_output():
    m = convnet()
    m.b1.register_forward_hook(lambda mod, inp, out: out * 3.0)
    return m, img()


def forward_pre_hook_changes_input():
    m = convnet()
    m.c2.register_forward_pre_hook(lambda mod, args: (args[0] + 1.0,))
    return m, img()


def root_hook():
    m = convnet()
    m.register_forward_hook(lambda mod, inp, out: out.softmax(-1))
    return m, img()


def compiled():
    m = convnet()
    return torch.compile(m), img()


def data_parallel():
    return nn.DataParallel(convnet()), img()


def scripted():
    return torch.jit.script(convnet()), img()


def traced_jit():
    m = convnet()
    return torch.jit.trace(m, img()), img()


class LazyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.LazyConv2d(16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.LazyLinear(5)

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def lazy_uninit():
    return LazyNet().eval(), img()


def lazy_init():
    m = LazyNet().eval()
    m(img())
    return m, img()


# --- modes --------------------------------------------------------------------------------------------------
class DropNet(ConvNet):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = self.drop(F.relu(self.b2(self.c2(x))))
        return self.fc(x.mean((2, 3)))


def train_mode():
    return randomize_(DropNet()).train(), img(b=4)


def mixed_mode():
    m = randomize_(DropNet()).train()
    m.b1.eval()
    return m, img(b=4)


class FunctionalDropout(ConvNet):
    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.dropout(F.relu(self.b2(self.c2(x))), 0.5, training=self.training)
        return self.fc(x.mean((2, 3)))


def functional_dropout_train():
    return randomize_(FunctionalDropout()).train(), img(b=2)


# --- dtypes / formats / flags -------------------------------------------------------------------------------
def float64():
    return convnet().double(), img().double()


def bfloat16():
    return convnet().to(torch.bfloat16), img().to(torch.bfloat16)


def float16():
    return convnet().half(), img().half()


def channels_last():
    m = convnet().to(memory_format=torch.channels_last)
    return m, img().to(memory_format=torch.channels_last)


def frozen_params():
    m = convnet()
    for p in m.c1.parameters():
        p.requires_grad_(False)
    m.b1.requires_grad_(False)
    return m, img()


class NonPersistent(ConvNet):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.randn(1, 16, 1, 1), persistent=False)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x))) + self.shift
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


def non_persistent():
    return randomize_(NonPersistent()).eval(), img()
