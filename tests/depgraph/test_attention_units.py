"""Attention units (``graphprune/depgraph/heads.py``): whole heads, head-dim offsets, both, auto.

Every rewrite is held to the oracle (``check_rewrite``: pruned == masked reference, MACs == FlopCounterMode);
dead heads are held to the *original* model (removing them must change nothing at all).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphprune
from graphprune.dead_units import dead_units
from graphprune.depgraph import Dim, build_dependency_graph
from graphprune.depgraph.heads import AUTO_MIN_HEADS, heads_kept
from graphprune.passes import rewrite
from graphprune.testing import PATTERNS, check_rewrite, randomize_
from graphprune.trace import trace


def _rotate_half(x, half: int):
    # NOTE: a literal half (as torch.export bakes it); a bound computed from x.shape[-1] is a symbolic slice,
    # which the fx getitem rule freezes
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    """Llama/timm-style attention with literal sizes: separate q, k, v projections, ``view`` to heads, optional
    GQA (``repeat_kv`` as expand + reshape, or SDPA ``enable_gqa``), optional RoPE, SDPA or manual softmax."""

    def __init__(self, dim: int = 32, heads: int = 4, kv_heads: int | None = None, rope: bool = False,
                 kind: str = "sdpa", seq: int = 6):
        super().__init__()
        self.heads, self.kv_heads, self.d = heads, kv_heads or heads, dim // heads
        self.rope, self.kind = rope, kind
        self.embed = nn.Linear(12, dim)
        self.q = nn.Linear(dim, heads * self.d)
        self.k = nn.Linear(dim, self.kv_heads * self.d)
        self.v = nn.Linear(dim, self.kv_heads * self.d)
        self.o = nn.Linear(heads * self.d, dim)
        self.head = nn.Linear(dim, 5)
        angle = torch.arange(seq)[:, None] * torch.rand(self.d // 2)[None]
        self.register_buffer("cos", torch.cat([angle.cos(), angle.cos()], -1))
        self.register_buffer("sin", torch.cat([angle.sin(), angle.sin()], -1))

    def _repeat_kv(self, t):
        n_rep = self.heads // self.kv_heads
        if n_rep == 1:
            return t
        b, h, n, d = t.shape
        # NOTE: -1, not h * n_rep: a size computed from reads is rewritten by the size-reads pass (helper "sizes")
        return t[:, :, None].expand(b, h, n_rep, n, d).reshape(b, -1, n, d)

    def forward(self, x):
        x = self.embed(x)
        b, n = x.shape[0], x.shape[1]
        q = self.q(x).view(b, n, self.heads, self.d).transpose(1, 2)
        k = self.k(x).view(b, n, self.kv_heads, self.d).transpose(1, 2)
        v = self.v(x).view(b, n, self.kv_heads, self.d).transpose(1, 2)
        if self.rope:
            q = q * self.cos + _rotate_half(q, self.d // 2) * self.sin
            k = k * self.cos + _rotate_half(k, self.d // 2) * self.sin
        if self.kind == "sdpa_gqa":
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        else:
            k, v = self._repeat_kv(k), self._repeat_kv(v)
            if self.kind == "sdpa":
                y = F.scaled_dot_product_attention(q, k, v)
            else:  # manual, scaled by the head dim read as a constant
                y = ((q @ k.transpose(-2, -1)) / math.sqrt(self.d)).softmax(-1) @ v
        y = y.transpose(1, 2).reshape(b, n, self.heads * self.d)
        return self.head(x + self.o(y))


VARIANTS = {
    "sdpa": dict(),
    "manual_scale": dict(kind="manual"),
    "rope": dict(rope=True),
    "gqa_2to1": dict(heads=4, kv_heads=2),
    "gqa_4to1_rope": dict(heads=8, kv_heads=2, rope=True),
    "gqa_4to1_manual": dict(heads=8, kv_heads=2, kind="manual"),
    "sdpa_enable_gqa_2to1": dict(heads=4, kv_heads=2, kind="sdpa_gqa"),
    "mqa": dict(heads=4, kv_heads=1),
}


def _model(**kw):
    torch.manual_seed(0)
    return Attention(**kw).eval(), torch.randn(2, 6, 12)


def _qkv_group(graph):
    hits = [g for g in graph.groups if Dim("@q.weight", 0) in g.members]
    assert len(hits) == 1
    return hits[0]


@pytest.mark.parametrize("mode", ["heads", "head_dim"])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "mqa"], ids=str)
def test_attention_units_pass_the_oracle(variant, mode):
    model, x = _model(**VARIANTS[variant])
    graph = build_dependency_graph(trace(model, x), attention=mode)
    qkv = _qkv_group(graph)
    vo = next(g for g in graph.groups if Dim("@v.weight", 0) in g.members)
    assert Dim("@k.weight", 0) in qkv.members and Dim("@o.weight", 1) in vo.members
    heads, kv, d = model.heads, model.kv_heads, model.d
    if mode == "heads":  # one unit per kv head: its q (heads // kv of them), k, v rows and o columns
        assert vo is qkv and qkv.n_units == kv
    else:  # one offset of every head (q with k, v with o); RoPE pairs offset j with j + d/2
        assert vo is not qkv and vo.n_units == d and qkv.n_units == (d // 2 if model.rope else d)
    for seed in range(3):
        result = check_rewrite(model, x, graph=graph, seed=seed)
        (_, hq, _, dq, _), (_, hk, _, dk, _) = heads_kept(graph, result.keep)[:2]
        assert hq * kv == hk * heads  # the GQA ratio stays valid
        if mode == "heads":
            assert dq == dk == d and hk == int(result.keep[qkv.units].sum())
        else:
            assert (hq, hk) == (heads, kv) and dq == dk


class SymbolicRope(Attention):
    """RoPE as Hugging Face writes it: the half is read from the tensor (``x.shape[-1] // 2``)."""

    def forward(self, x):
        x = self.embed(x)
        b, n = x.shape[0], x.shape[1]
        q, k, v = (p(x).view(b, n, self.heads, self.d).transpose(1, 2) for p in (self.q, self.k, self.v))
        q = q * self.cos + _rotate_half(q, q.shape[-1] // 2) * self.sin
        k = k * self.cos + _rotate_half(k, k.shape[-1] // 2) * self.sin
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, self.heads * self.d)
        return self.head(x + self.o(y))


def test_rope_with_run_time_half_prunes_heads_and_freezes_head_dim_with_the_reason():
    torch.manual_seed(0)
    model, x = SymbolicRope(rope=True).eval(), torch.randn(2, 6, 12)
    heads = build_dependency_graph(trace(model, x), attention="heads")
    assert _qkv_group(heads).n_units == model.heads
    check_rewrite(model, x, graph=heads, seed=1)
    # head_dim: the rotated half's bounds are run-time numbers, so q/k keep their head dim (the builder then
    # tries q/k's head axis, which v's offsets pin); v and o still lose offsets
    offsets = build_dependency_graph(trace(model, x), attention="head_dim")
    assert all(Dim("@q.weight", 0) not in g.members for g in offsets.groups)
    assert any(Dim("@q.weight", 0) in f.dims for f in offsets.frozen)
    v = next(g for g in offsets.groups if Dim("@v.weight", 0) in g.members)
    assert v.n_units == model.d
    check_rewrite(model, x, graph=offsets, seed=1)


def test_mqa_prunes_query_heads_within_the_group():
    """One kv head: whole-head units are the query heads (each with its copy of k and v and its o columns)."""
    model, x = _model(**VARIANTS["mqa"])
    graph = build_dependency_graph(trace(model, x), attention="heads")
    qo = _qkv_group(graph)
    assert qo.n_units == model.heads and Dim("@o.weight", 1) in qo.members
    assert all(Dim(f"@{p}.weight", 0) not in g.members for g in graph.groups for p in "kv")  # the one kv head
    for seed in range(2):
        result = check_rewrite(model, x, graph=graph, seed=seed)
        assert result.pruned.q.weight.shape[0] == model.d * int(result.keep[qo.units].sum())


def test_head_dim_pruning_keeps_the_original_softmax_scale():
    """SDPA without ``scale=`` gets the original ``1/sqrt(d)``; compared with the *original* model on a plan
    whose removed q/k offsets are zero in the weights (so the exact answer is known)."""
    model, x = _model()
    graph = build_dependency_graph(trace(model, x), attention="head_dim")
    qkv = _qkv_group(graph)
    keep = graph.full_keep()
    keep[qkv.first_unit:qkv.first_unit + 3] = False  # offsets 0, 1, 2 of every head
    with torch.no_grad():
        for name in ("q", "k"):
            w = getattr(model, name)
            rows = torch.tensor([h * model.d + j for h in range(model.heads) for j in range(3)])
            w.weight[rows] = 0
            w.bias[rows] = 0
        want = model(x)
    pruned = rewrite(graph, keep)
    assert pruned.q.weight.shape[0] == model.heads * (model.d - 3)
    assert torch.allclose(pruned(x), want, atol=1e-5)


@pytest.mark.parametrize("kill", ["v", "o"])
def test_dead_head_is_found_and_removed_exactly(kill):
    model, x = _model(heads=4)
    with torch.no_grad():
        head = slice(2 * model.d, 3 * model.d)
        if kill == "v":
            model.v.weight[head] = 0
            model.v.bias[head] = 0
        else:
            model.o.weight[:, head] = 0
        model.q.weight[:model.d] = 0  # q (and k) of head 0 zero: NOT dead (it averages v)
        model.k.weight[:model.d] = 0
    graph = build_dependency_graph(trace(model, x), attention="heads")
    qkv = _qkv_group(graph)
    dead = dead_units(graph)
    assert np.flatnonzero(dead).tolist() == [qkv.first_unit + 2]
    keep = ~dead
    with torch.no_grad():
        got, want = rewrite(graph, keep)(x), model(x)
    assert torch.allclose(got, want, atol=1e-5)
    # prune scores it 0: a budget that removes one head removes that one
    result = graphprune.prune(model, 0.9, x, attention="heads", round_to=1, return_result=True)
    removed = ~result.plan.keep_mask(graph)[qkv.units]
    assert removed[2]


def test_auto_prefers_whole_heads_only_with_enough_heads():
    few, x = _model(dim=32, heads=4)
    many, _ = _model(dim=64, heads=AUTO_MIN_HEADS)
    assert build_dependency_graph(trace(few, x)).attention == "head_dim"
    assert build_dependency_graph(trace(many, x)).attention == "heads"
    assert _qkv_group(build_dependency_graph(trace(many, x))).n_units == AUTO_MIN_HEADS


def test_multihead_attention_by_whole_heads():
    pattern = next(p for p in PATTERNS if p.name == "vit_multihead_attention")
    model, x = randomize_(pattern.build().eval()), pattern.make_input()
    # auto never picks whole heads for nn.MultiheadAttention: there a head unit spans the residual stream
    assert build_dependency_graph(trace(model, x)).attention == "head_dim"
    graph = build_dependency_graph(trace(model, x), attention="heads")
    stream = next(g for g in graph.groups if Dim("@attn.in_proj_weight", 1) in g.members)
    assert stream.n_units == model.attn.num_heads  # MHA ties the embedding width to whole heads
    result = check_rewrite(model, x, graph=graph, rtol=1e-4, seed=1)
    attn = result.pruned.attn
    assert attn.head_dim == model.attn.head_dim and attn.num_heads == attn.embed_dim // attn.head_dim < 4


def test_gqa_heads_export_to_onnx(tmp_path):
    model, x = _model(heads=8, kv_heads=2, rope=True)
    graph = build_dependency_graph(trace(model, x), attention="heads")
    result = check_rewrite(model, x, graph=graph, onnx_path=str(tmp_path / "gqa.onnx"), seed=2)
    assert result.onnx_diff is not None and result.pruned.k.weight.shape[0] == model.d  # one kv head left


def test_attention_argument_is_checked():
    model, x = _model()
    with pytest.raises(ValueError, match="attention must be one of"):
        graphprune.prune(model, 0.5, x, attention="rows")


def test_both_prunes_heads_then_head_dims():
    model, x = _model(dim=64, heads=8)
    result = graphprune.prune(model, 0.4, x, attention="both", round_to=1, return_result=True)
    assert result.report.macs_ratio <= 0.4 + 1e-6
    assert result.report.attention.startswith("both:")
    # the second round's graph is of the first round's model: its heads are those the first round kept
    (_, _, heads_left, d_kept, d), = [s for s in heads_kept(result.graph, result.plan.keep_mask(result.graph))
                                       if s[0] == "view"]
    assert result.graph.attention == "head_dim" and heads_left < 8 and d_kept <= d == 8
    assert result.model.q.weight.shape[0] == heads_left * d_kept
    with torch.no_grad():
        assert result.model(x).shape == model(x).shape
    with pytest.raises(graphprune.plan.PlanError, match="attention='both'"):
        graphprune.apply_plan(model, result.plan, x)


def test_a_plan_of_whole_heads_applies_again():
    model, x = _model(dim=64, heads=8)
    result = graphprune.prune(model, 0.5, x, attention="heads", strategy="uniform", round_to=1,
                              return_result=True)
    assert result.plan.info["attention"] == "heads"
    again = graphprune.apply_plan(model, graphprune.Plan.from_json(result.plan.to_json()), x)
    assert again.q.weight.shape == result.model.q.weight.shape != model.q.weight.shape
    with torch.no_grad():
        assert torch.equal(again(x), result.model(x))


# ---- whole models at 0.5 MACs with whole-head units: the plan prune chose, held to the oracle -------------------
def _prune_and_check(model, x, graph, **kw):
    result = graphprune.prune(model, 0.5, x, attention="heads", round_to=1, return_result=True, **kw)
    assert result.report.macs_ratio <= 0.5 + 1e-6 and "heads kept per attention" in result.report.attention
    check = check_rewrite(model, x, keep=result.plan.keep_mask(graph), graph=graph, rtol=1e-4)
    kept = heads_kept(graph, check.keep)
    assert all(d == dd for _, _, _, d, dd in kept) and any(h < hh for _, h, hh, _, _ in kept)
    return result


def test_timm_vit_by_whole_heads_at_half_macs():
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                              embed_dim=64, num_heads=4, num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    graph = build_dependency_graph(trace(model, x), attention="heads")
    assert all(g.n_units == 4 for g in graph.groups if "attn.qkv" in g.name)
    # NOTE: uniform, so that the attention groups lose units whatever the random weights rank (the global search
    # may meet the budget in the MLPs alone)
    _prune_and_check(randomize_(model), x, graph, strategy="uniform")


@pytest.mark.parametrize("heads,kv", [(4, 2), (8, 2)], ids=["gqa_2to1", "gqa_4to1"])
def test_hugging_face_llama_by_whole_heads_at_half_macs(heads, kv):
    transformers = pytest.importorskip("transformers")
    from graphprune.capture import capture_with_export

    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=heads,
                                   num_key_value_heads=kv, intermediate_size=128, max_position_embeddings=32,
                                   use_cache=False)
    torch.manual_seed(0)
    model, x = randomize_(transformers.LlamaForCausalLM(cfg).eval()), torch.randint(0, 100, (1, 16))
    graph = build_dependency_graph(capture_with_export(model, x), attention="heads")
    attn = [g for g in graph.groups if "self_attn" in g.name]
    assert len(attn) == 2 and all(g.n_units == kv for g in attn)  # a kv head with its query heads
    result = _prune_and_check(model, x, graph, front_end="export")
    assert result.report.attention.count("/") == 2  # one entry per layer (q, k and v splits of one attention)
    q, k = result.model.get_submodule("model.layers.0.self_attn.q_proj"), \
        result.model.get_submodule("model.layers.0.self_attn.k_proj")
    assert q.weight.shape[0] * kv == k.weight.shape[0] * heads


def test_hugging_face_bert_by_whole_heads():
    """torch.export's ATen graph of BERT self-attention: one unit per head (q, k, v rows, output columns)."""
    transformers = pytest.importorskip("transformers")
    from graphprune.capture import capture_with_export

    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    model, x = randomize_(transformers.BertForSequenceClassification(cfg).eval()), torch.randint(0, 100, (1, 16))
    graph = build_dependency_graph(capture_with_export(model, x), attention="heads")
    attn = "bert.encoder.layer.0.attention"
    heads = next(g for g in graph.groups if Dim(f"@{attn}.self.query.weight", 0) in g.members)
    assert heads.n_units == 4 and {Dim(f"@{attn}.self.key.weight", 0), Dim(f"@{attn}.self.value.weight", 0),
                                   Dim(f"@{attn}.output.dense.weight", 1)} <= set(heads.members)
    result = check_rewrite(model, x, graph=graph, seed=3)
    assert result.pruned.get_submodule(f"{attn}.self.query").weight.shape[0] == 16 * int(result.keep[heads.units].sum())
