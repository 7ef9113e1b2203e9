"""Small networks, one per channel-coupling pattern the dependency graph must get right.

Each ``Pattern`` builds a fresh model and its example input; ``exact`` is False where pruning changes
an op's statistics (LayerNorm), whose reference is the masked LayerNorm (``passes.masked_reference``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Pattern", "PATTERNS"]


def _cbr(cin: int, cout: int, k: int = 3, groups: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.a = _cbr(16, 24)
        self.b = nn.Sequential(nn.Conv2d(24, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2), nn.BatchNorm2d(32))
        self.c = nn.Sequential(_cbr(16, 32, stride=2), nn.Conv2d(32, 32, 3, padding=1))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.b(self.a(x)))
        x = self.down(x) + self.c(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand (1x1), depthwise 3x3, project (1x1), residual."""

    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.expand = _cbr(16, 48, 1)
        self.dw = _cbr(48, 48, 3, groups=48)
        self.dw_mult = nn.Conv2d(48, 96, 3, padding=1, groups=48)  # channel multiplier 2
        self.project = nn.Sequential(nn.Conv2d(96, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Conv2d(16, 10, 1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw_mult(self.dw(self.expand(x))))
        return self.head(x).mean((2, 3))


class GroupedConv(nn.Module):
    """ResNeXt-style grouped 3x3 (4 groups of 8) between 1x1 convs."""

    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.reduce = _cbr(16, 32, 1)
        self.grouped = _cbr(32, 32, 3, groups=4)
        self.grouped2 = nn.Conv2d(32, 16, 3, padding=1, groups=4)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.grouped2(self.grouped(self.reduce(self.stem(x))))
        return self.head(x.mean((2, 3)))


class Inception(nn.Module):
    """Parallel branches joined by concat, then a consumer of the joined channels."""

    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.b1 = _cbr(16, 8, 1)
        self.b2 = nn.Sequential(_cbr(16, 12, 1), _cbr(12, 16, 3))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(16, 8, 1))
        self.after = _cbr(32, 24, 3)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x)], dim=1)
        return self.fc(self.after(x).mean((2, 3)))


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: chunk, one branch transformed, concat, channel shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 32)
        self.branch = nn.Sequential(_cbr(16, 16, 1), nn.Conv2d(16, 16, 3, padding=1, groups=16),
                                    nn.BatchNorm2d(16), _cbr(16, 16, 1))
        self.head = nn.Conv2d(32, 10, 1)

    def forward(self, x):
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return self.head(x).mean((2, 3))


class Res2NetSplit(nn.Module):
    """Res2Net-style: split into fixed-width pieces, a conv per piece, the last piece via ``[-1]``."""

    def __init__(self, width: int = 8, scale: int = 4):
        super().__init__()
        self.width = width
        self.conv1 = _cbr(3, width * scale, 1)
        self.convs = nn.ModuleList(_cbr(width, width) for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.conv3 = nn.Conv2d(width * scale, 10, 1)

    def forward(self, x):
        pieces = torch.split(self.conv1(x), self.width, 1)
        outs = [conv(pieces[i]) for i, conv in enumerate(self.convs)]
        outs.append(self.pool(pieces[-1]))
        return self.conv3(torch.cat(outs, 1)).mean((2, 3))


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 32)
        self.fc1 = nn.Linear(32, 8)
        self.fc2 = nn.Linear(8, 32)
        self.se_conv = nn.Sequential(nn.Conv2d(32, 8, 1), nn.ReLU(), nn.Conv2d(8, 32, 1), nn.Hardsigmoid())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        b, c, _, _ = x.size()
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1).view(b, c))))).view(b, c, 1, 1)
        x = x * s
        x = x * self.se_conv(x.mean((2, 3), keepdim=True))
        return self.head(x.mean((2, 3)))


class FlattenLinear(nn.Module):
    """conv features flattened into a classifier: one channel feeds H*W linear inputs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(_cbr(3, 16), nn.MaxPool2d(2), _cbr(16, 24), nn.AdaptiveAvgPool2d(3))
        self.fc1 = nn.Linear(24 * 9, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block with nn.MultiheadAttention, patch embedding and class token."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 5, dim) * 0.1)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(x[:, 0])


class HeadsAttention(nn.Module):
    """timm-style attention: qkv linear, reshape to heads with literal sizes, SDPA, merge heads."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.embed = nn.Linear(12, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.embed(x)
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        y = y + attn @ v
        y = y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.out(x + self.proj(y)).mean(1)


class Norms(nn.Module):
    """GroupNorm (whole groups), InstanceNorm, channels-last LayerNorm via permute, PReLU."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 3, padding=1)
        self.gn = nn.GroupNorm(8, 32)
        self.c2 = nn.Conv2d(32, 24, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(24, affine=True)
        self.act = nn.PReLU(24)
        self.c3 = nn.Conv2d(24, 16, 1)
        self.ln = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.inorm(self.c2(F.relu(self.gn(self.c1(x)))))
        x = self.c3(self.act(x)).permute(0, 2, 3, 1)
        return self.fc(self.ln(x)).mean((1, 2))


class LayerScale(nn.Module):
    """ConvNeXt-style: depthwise 7x7, raw (C,1,1) layer-scale parameter, residual, raw bias param."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 2, 2)
        self.dw = nn.Conv2d(24, 24, 7, padding=3, groups=24)
        self.pw1 = nn.Conv2d(24, 48, 1)
        self.pw2 = nn.Conv2d(48, 24, 1)
        self.gamma = nn.Parameter(torch.rand(24, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.randn(1, 48, 1, 1))
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.gamma * self.pw2(F.gelu(self.pw1(self.dw(x)) + self.shift))
        return self.head(x.mean((2, 3)))


class Decoder(nn.Module):
    """Encoder-decoder: strided conv, ConvTranspose2d, upsample + skip add, slicing."""

    def __init__(self):
        super().__init__()
        self.enc1 = _cbr(3, 16)
        self.enc2 = _cbr(16, 32, stride=2)
        self.up = nn.ConvTranspose2d(32, 16, 2, 2)
        self.lateral = nn.Conv2d(32, 16, 1)
        self.out = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        a = self.enc1(x)
        b = self.enc2(a)
        x = self.up(b) + a + F.interpolate(self.lateral(b), scale_factor=2.0, mode="nearest")
        y = self.out(x[:, :12].sum(1, keepdim=True) + x[:, 4:])
        return y


class TextEncoder(nn.Module):
    """Embedding, Conv1d over tokens, einsum and matmul contractions."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 24)
        self.conv = nn.Conv1d(24, 32, 3, padding=1)
        self.key = nn.Linear(32, 16)
        self.query = nn.Linear(32, 16)
        self.out = nn.Linear(32, 5)

    def forward(self, tokens):
        x = self.emb(tokens).transpose(1, 2)
        x = F.relu(self.conv(x)).transpose(1, 2)
        scores = torch.einsum("bnd,bmd->bnm", self.query(x), self.key(x)).softmax(-1)
        return self.out(torch.matmul(scores, x)).mean(1)


class DenseBlock(nn.Module):
    """DenseNet-style: every layer reads the concat of all earlier outputs."""

    def __init__(self, growth: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(16 + i * growth), nn.ReLU(), nn.Conv2d(16 + i * growth, growth, 3, padding=1))
            for i in range(3))
        self.fc = nn.Linear(16 + 3 * growth, 10)

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return self.fc(torch.cat(features, 1).mean((2, 3)))


@dataclass(frozen=True)
class Pattern:
    name: str
    build: Callable[[], nn.Module]
    make_input: Callable[[], torch.Tensor]
    exact: bool = True


def _image(c: int = 3, s: int = 8) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(2, c, s, s)


PATTERNS: list[Pattern] = [
    Pattern("residual", Residual, _image()),
    Pattern("inverted_residual_depthwise", InvertedResidual, _image()),
    Pattern("grouped_conv", GroupedConv, _image()),
    Pattern("inception_concat", Inception, _image()),
    Pattern("shuffle_split_concat", ShuffleUnit, _image()),
    Pattern("res2net_split_negative_index", Res2NetSplit, _image()),
    Pattern("squeeze_excite", SqueezeExcite, _image()),
    Pattern("flatten_linear", FlattenLinear, _image()),
    Pattern("vit_multihead_attention", ViTBlock, _image(3, 8), exact=False),
    Pattern("heads_reshape_sdpa", HeadsAttention, lambda: torch.randn(2, 6, 12)),
    Pattern("norms_gn_in_ln_prelu", Norms, _image(), exact=False),
    Pattern("layer_scale_raw_params", LayerScale, _image()),
    Pattern("decoder_transpose_upsample_slice", Decoder, _image()),
    Pattern("text_embedding_einsum", TextEncoder, lambda: torch.randint(0, 50, (2, 7))),
    Pattern("dense_concat", DenseBlock, _image()),
]
