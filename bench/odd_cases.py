"""The odd-but-real models and inputs of ``bench/odd_inputs.py``: each case builds (model, inputs, second inputs,
prune options, call kwargs)."""
from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrizations as P

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


def cases():
    out = [
        Case("weight_norm", "parametrizations.weight_norm on two convs", weight_norm_new),
        Case("spectral_norm", "parametrizations.spectral_norm on a conv and the fc", spectral_norm_new),
        Case("orthogonal", "parametrizations.orthogonal on a square Linear", orthogonal_new),
        Case("custom_parametrization", "register_parametrization(weight, w*2)", custom_parametrization),
        Case("weight_norm_old", "old nn.utils.weight_norm (pre-hook)", weight_norm_old),
        Case("spectral_norm_old", "old nn.utils.spectral_norm (pre-hook, power iteration buffers)",
             spectral_norm_old),
        Case("module_twice", "one Conv called twice in a row", lambda: (Twice().eval(), img())),
        Case("tied_embedding", "Embedding tied to the output Linear",
             lambda: (TiedLM().eval(), torch.randint(0, 50, (2, 6)))),
        Case("conv_two_branches", "one Conv reused in two branches", lambda: (TwoBranches().eval(), img())),
        Case("shared_parameter", "two Linears holding one Parameter",
             lambda: (SharedParam().eval(), torch.randn(2, 8))),
        Case("forward_hook", "forward hook scales a BN output x3", forward_hook_changes_output),
        Case("pre_hook", "forward pre-hook adds 1 to a conv input", forward_pre_hook_changes_input),
        Case("root_hook", "forward hook on the root (softmax)", root_hook),
        Case("torch_compile", "torch.compile(model) (OptimizedModule)", compiled),
        Case("data_parallel", "nn.DataParallel wrapper (CPU)", data_parallel),
        Case("jit_script", "torch.jit.script(model)", scripted),
        Case("jit_trace", "torch.jit.trace(model)", traced_jit),
        Case("lazy_uninitialised", "LazyConv2d/LazyLinear not yet run", lazy_uninit),
        Case("lazy_initialised", "LazyConv2d/LazyLinear after one run", lazy_init),
        Case("train_mode", "model in train mode (BN batch stats, dropout)", train_mode),
        Case("mixed_mode", "train mode with one BN in eval", mixed_mode),
        Case("functional_dropout_train", "F.dropout(training=self.training) in train mode",
             functional_dropout_train),
        Case("float64", "float64 model and input", float64),
        Case("bfloat16", "bfloat16 model and input", bfloat16),
        Case("float16", "float16 model and input", float16),
        Case("channels_last", "channels_last weights and input", channels_last),
        Case("frozen_params", "requires_grad=False on some params", frozen_params),
        Case("non_persistent_buffer", "non-persistent (1,C,1,1) buffer added to channels", non_persistent),
        Case("dict_input", "forward(batch: dict)", dict_input, onnx=False),
        Case("dict_example_inputs", "example_inputs given as a dict", dict_as_example_inputs, onnx=False),
        Case("nested_tuple_input", "forward((a, b))", nested_tuple_input, onnx=False),
        Case("tensor_kwarg", "forward(x, scale) with a tensor scale", kwargs_input),
        Case("none_argument", "forward(x, None, False)", none_argument, onnx=False),
        Case("scalar_argument", "forward(x, 3.0)", scalar_argument, onnx=False),
        Case("int_tokens", "integer token input (Embedding)", int_tokens),
        Case("batch4_only", "view(4, -1) bakes batch 4", batch4_only),
        Case("batch_mixing", "x - x.mean(0) across the batch", batch_mixing),
        Case("dict_output", "returns a dict", dict_output),
        Case("namedtuple_output", "returns a namedtuple", namedtuple_output),
        Case("dataclass_output", "returns a dataclass", dataclass_output, onnx=False),
        Case("in_place_ops", "relu_, +=, masked_fill_", in_place_ops),
        Case("raw_functional", "F.conv2d/F.linear with raw Parameters", raw_functional),
        Case("layer_scale", "(1,C,1,1) Parameter scaling a residual branch", layer_scale),
        Case("channel_shuffle", "view/transpose channel shuffle", channel_shuffle),
        Case("channel_shuffle_builtin", "F.channel_shuffle", channel_shuffle_builtin),
        Case("cat_split", "cat then split at a different boundary", cat_split),
        Case("cat_chunk", "cat then chunk", cat_chunk),
        Case("view_flatten", "reshape(b, -1) into a Linear", view_flatten),
        Case("view_scramble", "reshape mixing channels with spatial dims", view_scramble),
        Case("permute_linear", "permute NCHW->NHWC then Linear", permute_linear),
        Case("einsum", "einsum over channels with a raw Parameter", einsum),
        Case("index_channels", "y[:, 2:5] channel slicing", index_channels),
        Case("reduce_over_channels", "sum/max over the channel dim", reduce_over_channels),
        Case("softmax_over_channels", "softmax over channels", softmax_over_channels),
        Case("l2_normalize_channels", "F.normalize(dim=1)", l2_normalize_channels),
        Case("group_norm", "GroupNorm(4, 16)", group_norm),
        Case("instance_norm", "InstanceNorm2d(affine)", instance_norm),
        Case("conv_transpose", "ConvTranspose2d", conv_transpose),
        Case("lstm", "LSTM after a Linear", lstm),
        Case("prelu", "PReLU(16)", prelu),
        Case("raw_bias_vector", "raw (C,) Parameter added to a Linear output", raw_bias_vector),
        Case("size_read_buffer", "buffer[: x.shape[1]] (size read)", size_read_buffer),
        Case("sequential_subclass_lazy", "nn.Sequential subclass with a LazyLinear (uninitialised)",
             sequential_subclass),
        Case("sequential_inplace_relu", "nn.Sequential with ReLU(inplace=True)", sequential_plain),
        Case("budget_1", "budget 1.0", lambda: (convnet(), img()), budget=1.0),
        Case("budget_tiny", "budget 0.01", lambda: (convnet(), img()), budget=0.01),
        Case("budget_nan", "budget NaN", lambda: (convnet(), img()), budget=float("nan")),
        Case("budget_negative", "budget -0.5", lambda: (convnet(), img()), budget=-0.5),
        Case("budget_zero", "budget 0", lambda: (convnet(), img()), budget=0.0),
        Case("budget_above_1", "budget 1.5", lambda: (convnet(), img()), budget=1.5),
        Case("budget_string", "budget '0.5'", lambda: (convnet(), img()), budget="0.5"),
        Case("budget_bool", "budget True", lambda: (convnet(), img()), budget=True),
        Case("budget_tensor_1elem", "budget torch.tensor([0.5])", lambda: (convnet(), img()),
             budget=torch.tensor([0.5])),
        Case("nothing_prunable", "Conv(3,3) + ReLU: no prunable channel", nothing_prunable),
        Case("no_parameters", "ReLU + Flatten only", no_params),
        Case("empty_input_tuple", "example_inputs=()", lambda: (convnet(), ())),
        Case("wrong_input_shape", "example input with the wrong channel count", lambda: (convnet(), img(c=4))),
        Case("input_requires_grad", "example input with requires_grad=True",
             lambda: (convnet(), img().requires_grad_())),
    ]
    return out


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


def extra_cases():
    return [
        Case("torch_nn_utils_prune", "torch.nn.utils.prune.l1_unstructured (weight_orig * weight_mask pre-hook)",
             torch_prune_l1),
        Case("module_alias", "one module under two attribute names", lambda: (randomize_(Alias()).eval(), img())),
        Case("perm_buffer_index", "x[:, perm] with an index buffer", lambda: (PermIndex().eval(), img(h=4))),
        Case("conv1d_bn1d", "Conv1d + BatchNorm1d on (B, C, L)",
             lambda: (randomize_(Conv1dNet()).eval(), torch.randn(2, 4, 10))),
        Case("cat_batch_dim", "torch.cat of two branches along the batch dim", lambda: (CatBatch().eval(), img())),
        Case("depthwise_reflect", "depthwise dilated conv with padding_mode='reflect'",
             lambda: (Depthwise().eval(), img())),
        Case("unused_module_param", "a Linear and a Parameter never used in forward",
             lambda: (randomize_(Unused()).eval(), img())),
        Case("buffer_on_two_modules", "one buffer tensor registered on two modules",
             lambda: (BufferTied().eval(), img(h=4))),
    ]


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


def more_cases():
    return [
        Case("param_slice", "F.linear(y[:, :8], fc.weight[:, :8])", lambda: (ParamSlice().eval(), img(h=4))),
        Case("literal_channels", "adds torch.ones(b, 16, h, w) (literal 16)", lambda: (LiteralZeros().eval(), img(h=4))),
        Case("literal_view", "view(b, 16, -1) (literal 16)", lambda: (LiteralView().eval(), img(h=4))),
        Case("pixel_shuffle", "F.pixel_shuffle(., 2) after a conv", lambda: (PixelShuffle().eval(), img(h=4))),
        Case("weight_in_output", "returns (y, c1.weight.pow(2).sum())", lambda: (WeightOut().eval(), img(h=4))),
        Case("matmul_raw_params", "x @ W1.t() @ W2.t() with raw Parameters",
             lambda: (MatmulParam().eval(), torch.randn(3, 8))),
    ]


CASES = cases() + extra_cases() + more_cases()
