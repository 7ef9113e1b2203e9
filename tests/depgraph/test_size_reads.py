"""Size reads (``depgraph/rules/size_reads.py`` + ``passes/rule_rewrites.bake_size_reads``), both front ends.

Every check is the mask-equivalence oracle (``graphprune.testing.check_rewrite``: pruned == the original with the
removed channels zeroed, to 1e-5; MACs == FlopCounterMode): a size read used as a number keeps its original value,
a size read used as a size gives the planned size, and what cannot be made exact is frozen with the reason.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphprune
from graphprune.capture import capture_with_export
from graphprune.depgraph import Dim, build_dependency_graph
from graphprune.passes import masked_model
from graphprune.testing import check_rewrite, randomize_
from graphprune.trace import trace

FRONT_ENDS = ["fx", "export"]


def _graph(model, x, front_end):
    traced = trace(model, x) if front_end == "fx" else capture_with_export(model, x)
    return build_dependency_graph(traced)


def _group_of(graph, param: str, axis: int = 0):
    found = [g for g in graph.groups if Dim(param, axis) in g.members]
    return found[0] if found else None


def _frozen_reasons(graph, param: str, axis: int = 0) -> list[str]:
    return [f.reason for f in graph.frozen if Dim(param, axis) in f.dims]


def _check_plans(model, x, graph, seeds=(0, 1, 2)):
    results = [check_rewrite(model, x, graph=graph, seed=s) for s in seeds]
    assert any(r.counted_macs < graph.cost().macs for r in results)  # something was really removed
    return results


# ---- the two measured cases -------------------------------------------------------------------------
class DivideBySize(nn.Module):
    """``h / h.shape[1]``: before the fix the pruned model divided by the pruned width (off by 16/12)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h / h.shape[1])


class ManualAttentionScale(nn.Module):
    """Manual attention scaled by ``q.size(-1) ** -0.5``: the scale must stay the original head dim's."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        attn = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        return self.o(attn.softmax(-1) @ v)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_size_read_used_as_a_divisor_keeps_the_original_value(front_end):
    model, x = DivideBySize().eval(), torch.randn(2, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@a.weight").n_units == 16
    results = _check_plans(model, x, graph)
    assert all(r.max_diff <= 1e-5 for r in results)
    assert all(r.pruned.a.weight.shape[0] < 16 for r in results)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_size_read_used_as_an_attention_scale_keeps_the_original_value(front_end):
    model, x = ManualAttentionScale().eval(), torch.randn(2, 5, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@q.weight").n_units == 16 and Dim("@k.weight", 0) in _group_of(graph, "@q.weight").members
    results = _check_plans(model, x, graph)
    pruned = results[0].pruned
    assert pruned.q.weight.shape[0] < 16
    if front_end == "fx":
        assert "0.25" in pruned.code and "size" not in pruned.code  # 16 ** -0.5, not the pruned width's


# ---- timm-style attention: C = x.shape[-1] … reshape(B, N, C) -------------------------------------------------
class Attention(nn.Module):
    """timm's Attention before ``attn_dim``: the inner width is given by the residual width's number ``C``."""

    def __init__(self, dim: int, heads: int, fused: bool):
        super().__init__()
        self.heads, self.fused = heads, fused
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.size(0), x.size(1), x.shape[-1]  # timm: ``B, N, C = x.shape``
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * q.size(-1) ** -0.5) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, fused: bool = True):
        super().__init__()
        self.embed, self.head = nn.Linear(6, dim), nn.Linear(dim, 3)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, fused)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x):
        x = self.embed(x)
        x = x + self.attn(self.norm1(x))
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return self.head(x)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "manual"])
def test_reshape_with_a_read_width_does_not_couple_residual_and_inner_widths(front_end, fused):
    model, x = randomize_(Block(fused=fused).eval()), torch.randn(2, 5, 6)
    graph = _graph(model, x, front_end)
    residual, inner = _group_of(graph, "@embed.weight"), _group_of(graph, "@attn.qkv.weight")
    assert residual is not None and inner is not None and residual is not inner
    assert Dim("@attn.proj.weight", 0) in residual.members and Dim("@attn.proj.weight", 1) in inner.members
    _check_plans(model, x, graph)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "manual"])
def test_attention_block_at_half_the_macs_is_mask_equivalent(front_end, fused):
    model, x = randomize_(Block(dim=32, heads=4, fused=fused).eval()), torch.randn(2, 7, 6)
    result = graphprune.prune(model, 0.5, x, front_end=front_end, round_to=1, return_result=True)
    keep = result.plan.keep_mask(result.graph)
    r = check_rewrite(model, x, keep=keep, graph=result.graph)
    assert r.planned_macs <= 0.5 * result.graph.cost().macs + 1e-9
    assert result.model.embed.weight.shape[0] < 32 and result.model.attn.qkv.weight.shape[0] < 96
    if front_end == "fx":  # batch and sequence sizes stay symbolic: another batch and length still run
        x2 = torch.randn(3, 4, 6)
        with torch.no_grad():
            want = masked_model(result.graph, keep)(x2)
            assert torch.allclose(result.model(x2), want, atol=1e-5)


# ---- sizes in factories --------------------------------------------------------------------------------------
class Factories(nn.Module):
    """Sizes read into ``new_ones`` and ``torch.full`` (as sizes and as the fill value)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        B, C = h.shape
        h = h + h.new_ones(B, C) + torch.full((B, C), C, dtype=h.dtype)
        return self.b(h)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_size_reads_in_factories_follow_the_plan_and_fill_values_keep_the_original(front_end):
    model, x = Factories().eval(), torch.randn(2, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@a.weight").n_units == 16
    _check_plans(model, x, graph)


class Arange(nn.Module):
    """``torch.arange(C)`` added to the channels: element k is k, so no channel may go (frozen, with why)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        return self.b(h + torch.arange(h.shape[-1], dtype=h.dtype))


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_size_read_into_arange_freezes_the_width_with_the_reason(front_end):
    model, x = Arange().eval(), torch.randn(2, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@a.weight") is None
    assert any("arange" in r for r in _frozen_reasons(graph, "@a.weight")), _frozen_reasons(graph, "@a.weight")


# ---- a whole shape read, and Python that cannot be evaluated ----------------------------------------------------
class ReshapeToReadShape(nn.Module):
    """``b(h).reshape(h.shape)``: b's width is given by h's number; the two are separate groups."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        return self.c(self.b(h).reshape(h.shape))


def test_whole_shape_read_gives_the_planned_sizes():
    model, x = ReshapeToReadShape().eval(), torch.randn(2, 8)
    graph = _graph(model, x, "fx")
    assert _group_of(graph, "@a.weight") is not _group_of(graph, "@b.weight")
    for r in _check_plans(model, x, graph):
        if r.pruned.a.weight.shape[0] != r.pruned.b.weight.shape[0]:
            break
    else:
        pytest.fail("no plan pruned the two widths differently")


@torch.fx.wrap
def _opaque_number(n):
    return n * 2


class OpaqueUse(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        return self.b(h * _opaque_number(h.shape[1]))


def test_size_read_into_unevaluable_python_freezes_the_width_with_the_reason():
    model, x = OpaqueUse().eval(), torch.randn(2, 8)
    graph = _graph(model, x, "fx")
    assert _group_of(graph, "@a.weight") is None
    assert any("cannot evaluate" in r and "_opaque_number" in r for r in _frozen_reasons(graph, "@a.weight"))


# ---- reductions over channels --------------------------------------------------------------------------------
class ChannelMean(nn.Module):
    """``h.mean(1)`` and ``h.sum(1) / h.shape[1]`` over the channels; ``h.mean(0)``-style over tokens."""

    def __init__(self, over: str):
        super().__init__()
        self.over = over
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)  # (B, N, 16)
        if self.over == "channels_mean":
            return self.b(h - h.mean(-1, keepdim=True))
        if self.over == "channels_sum_by_size":
            return self.b(h - h.sum(-1, keepdim=True) / h.shape[-1])
        return self.b(h - h.mean(1, keepdim=True))  # over tokens: channels untouched


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("over", ["channels_mean", "channels_sum_by_size"])
def test_reduction_over_pruned_channels_is_frozen_with_the_reason(front_end, over):
    model, x = ChannelMean(over).eval(), torch.randn(2, 5, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@a.weight") is None
    reasons = _frozen_reasons(graph, "@a.weight")
    assert any("axis 2" in r and ("mean" in r or "sum" in r) for r in reasons), reasons


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_reduction_over_tokens_leaves_the_channels_prunable(front_end):
    model, x = ChannelMean("tokens").eval(), torch.randn(2, 5, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@a.weight").n_units == 16
    _check_plans(model, x, graph)


def test_unchanged_widths_stay_symbolic():
    """Nothing is baked where the plan keeps every channel: the graph is the traced one."""
    model, x = DivideBySize().eval(), torch.randn(2, 8)
    graph = _graph(model, x, "fx")
    r = check_rewrite(model, x, keep=graph.full_keep(), graph=graph)
    assert "shape" in r.pruned.code and np.isclose(r.max_diff, 0.0)


class SplitBySize(nn.Module):
    """``h.split(h.shape[-1] // 2, -1)``: a size read into an op that returns a tuple (the split rewrite sizes it)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(8, 4)

    def forward(self, x):
        lo, hi = self.a(x).split(self.a(x).shape[-1] // 2, dim=-1)
        return self.b(lo * hi)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_size_read_into_a_tuple_returning_op_is_not_frozen(front_end):
    model, x = SplitBySize().eval(), torch.randn(2, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@a.weight") is not None, [f.reason for f in graph.frozen]
    _check_plans(model, x, graph)


class AssertsWidth(nn.Module):
    """``torch._assert(h.shape[1] == 16)``: the check holds in the reference, so it must hold pruned."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        torch._assert(h.shape[1] == 16, "width")
        return self.b(h)


def test_size_read_into_an_assert_keeps_the_original_value():
    model, x = AssertsWidth().eval(), torch.randn(2, 8)
    graph = _graph(model, x, "fx")
    assert _group_of(graph, "@a.weight").n_units == 16
    _check_plans(model, x, graph)


class ClampBySize(nn.Module):
    """Bounds computed from a width (``clamp(max=C / 64)``): the pruned model must clamp at the original bounds."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        return self.b(h.clamp(min=-h.shape[1] / 64, max=h.shape[1] / 64))


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_size_read_as_clamp_bounds_keeps_the_original_value(front_end):
    model, x = ClampBySize().eval(), torch.randn(4, 8)
    graph = _graph(model, x, front_end)
    assert _group_of(graph, "@a.weight").n_units == 16
    _check_plans(model, x, graph)
