"""The torch.export front end feeds the same pipeline as fx: groups, rewrite, oracle, ONNX, training.

Every rewrite is held to ``check_rewrite`` (pruned == masked reference, MACs == FlopCounterMode, params,
and ONNX Runtime where asked) on graphs built by ``build_dependency_graph(capture_with_export(...))``.
"""
import numpy as np
import pytest
import timm  # in the test extra, as is transformers
import torch
import torch.nn as nn
import transformers

from graphprune.capture import capture_with_export
from graphprune.depgraph import Dim, build_dependency_graph
from graphprune.passes import rewrite
from graphprune.testing import PATTERNS, check_rewrite, random_keep, randomize_
from graphprune.trace import TraceError, trace


def _partition(graph) -> set[tuple[frozenset, int]]:
    """Groups as (parameter dims that shrink, unit count): independent of node names and group names."""
    return {(frozenset(d for d in g.members if d.value.startswith("@")), g.n_units) for g in graph.groups}


def _group_with(graph, param: str, axis: int = 0):
    hits = [g for g in graph.groups if Dim(f"@{param}", axis) in g.members]
    assert len(hits) == 1, f"{param}[{axis}] in {len(hits)} groups"
    return hits[0]


def _frozen_reasons(graph, param: str, axis: int) -> list[str]:
    return [f.reason for f in graph.frozen if Dim(f"@{param}", axis) in f.dims]


# nn.MultiheadAttention is one opaque module with its own rule in fx; export decomposes it (see below).
_SAME_AS_FX = [p for p in PATTERNS if p.name != "vit_multihead_attention"]


@pytest.mark.parametrize("pattern", _SAME_AS_FX, ids=lambda p: p.name)
def test_patterns_give_the_fx_groups_and_pass_the_oracle(pattern):
    model, x = randomize_(pattern.build().eval()), pattern.make_input()
    exported = build_dependency_graph(capture_with_export(model, x))
    assert _partition(exported) == _partition(build_dependency_graph(trace(model, x)))
    check_rewrite(model, x, graph=exported, rtol=1e-5 if pattern.exact else 1e-4)


def _mlp():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 12), nn.GELU(),
                         nn.LayerNorm(12), nn.Linear(12, 3)), torch.randn(4, 8)


def _conv_net():
    pattern = next(p for p in PATTERNS if p.name == "residual")
    return pattern.build(), pattern.make_input()


@pytest.mark.parametrize("build", [_conv_net, _mlp], ids=["conv_net", "mlp"])
def test_conv_net_and_mlp_match_fx_and_export_to_onnx(build, tmp_path):
    model, x = build()
    model = randomize_(model.eval())
    graph = build_dependency_graph(capture_with_export(model, x))
    assert _partition(graph) == _partition(build_dependency_graph(trace(model, x)))
    assert [g.name for g in graph.groups] == [g.name for g in build_dependency_graph(trace(model, x)).groups]
    result = check_rewrite(model, x, graph=graph, onnx_path=str(tmp_path / "model.onnx"))
    assert result.onnx_diff is not None and result.keep.sum() < result.graph.n_units


def test_multihead_attention_is_decomposed_into_prunable_aten_ops():
    """Export records MultiheadAttention's own ops: its input projection is read through ``select``
    (frozen, with that reason) while the embedding channels stay prunable one by one."""
    pattern = next(p for p in PATTERNS if p.name == "vit_multihead_attention")
    model, x = randomize_(pattern.build().eval()), pattern.make_input()
    graph = build_dependency_graph(capture_with_export(model, x))
    assert _group_with(graph, "patch.weight").n_units == 32
    assert any("aten.select.int" in r for r in _frozen_reasons(graph, "attn.in_proj_weight", 0))
    check_rewrite(model, x, graph=graph, rtol=1e-4)


# ---- Hugging Face transformers 5.x (fx cannot trace these) ----------------------------------------------
def _vit():
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                 image_size=32, patch_size=8, num_labels=3)
    return transformers.ViTForImageClassification(cfg), torch.randn(1, 3, 32, 32)


def _bert():
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(cfg), torch.randint(0, 100, (1, 16))


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=128, max_position_embeddings=32,
                                   use_cache=False)
    return transformers.LlamaForCausalLM(cfg), torch.randint(0, 100, (1, 16))


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32, use_cache=False,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg), torch.randint(0, 100, (1, 16))


def _captured(build):
    torch.manual_seed(0)
    model, x = build()
    model = randomize_(model.eval())
    return model, x, build_dependency_graph(capture_with_export(model, x))


def test_fx_cannot_trace_hugging_face_vit():
    model, x = _vit()
    with pytest.raises(TraceError):
        trace(model.eval(), x)


@pytest.mark.parametrize("layer", [0, 1])
def test_vit_groups(layer):
    model, x, graph = _captured(_vit)
    attn, mlp = f"vit.layers.{layer}.attention", f"vit.layers.{layer}.mlp"
    hidden = _group_with(graph, "vit.embeddings.patch_embeddings.projection.weight")
    assert hidden.n_units == 64 and not hidden.exact  # the residual stream, through every LayerNorm
    assert _group_with(graph, f"{attn}.o_proj.weight") is hidden
    assert _group_with(graph, f"{mlp}.fc1.weight").n_units == 128
    qk = _group_with(graph, f"{attn}.q_proj.weight")
    assert qk is _group_with(graph, f"{attn}.k_proj.weight") and qk.n_units == 16  # channel k of every head
    assert _group_with(graph, f"{attn}.v_proj.weight") is _group_with(graph, f"{attn}.o_proj.weight", 1)
    assert _frozen_reasons(graph, "classifier.weight", 0) == ["model output"]


def test_bert_groups():
    model, x, graph = _captured(_bert)
    hidden = _group_with(graph, "bert.embeddings.word_embeddings.weight", 1)
    assert hidden.n_units == 64
    assert _group_with(graph, "bert.embeddings.position_embeddings.weight", 1) is hidden
    assert _group_with(graph, "bert.encoder.layer.1.intermediate.dense.weight").n_units == 128
    assert _group_with(graph, "bert.pooler.dense.weight").n_units == 64
    assert _frozen_reasons(graph, "classifier.weight", 0) == ["model output"]


def test_llama_groups_follow_rope_pairs_and_freeze_rmsnorm_width():
    model, x, graph = _captured(_llama)
    qk = _group_with(graph, "model.layers.0.self_attn.q_proj.weight")
    # RoPE rotates element j with j + d/2, and its inv_freq buffer is shared by every layer: one unit is a
    # pair of head-dim channels of q and k, in all layers at once.
    assert qk.n_units == 8
    assert qk is _group_with(graph, "model.layers.1.self_attn.k_proj.weight")
    assert Dim("@model.rotary_emb.inv_freq", 0) in qk.members
    # GQA: v has 2 heads of 16; its head-dim channel k is pruned in both (and in o_proj's input).
    assert _group_with(graph, "model.layers.0.self_attn.v_proj.weight").n_units == 16
    assert _group_with(graph, "model.layers.1.mlp.gate_proj.weight") is \
        _group_with(graph, "model.layers.1.mlp.up_proj.weight")
    # RMSNorm divides by the mean over the hidden width: that width is frozen, and the reason says so.
    assert any("aten.mean.dim" in r for r in _frozen_reasons(graph, "model.embed_tokens.weight", 1))


def test_gpt2_groups_tie_embedding_and_head():
    model, x, graph = _captured(_gpt2)
    hidden = _group_with(graph, "transformer.wte.weight", 1)
    assert hidden is _group_with(graph, "lm_head.weight", 1) and hidden.n_units == 64
    assert _group_with(graph, "transformer.h.0.mlp.c_fc.weight", 1).n_units == 256  # Conv1D: (in, out)


@pytest.mark.parametrize("build", [_vit, _bert, _llama, _gpt2], ids=["vit", "bert", "llama", "gpt2"])
def test_hugging_face_rewrite_passes_the_oracle_and_onnx(build, tmp_path):
    model, x, graph = _captured(build)
    result = check_rewrite(model, x, graph=graph, onnx_path=str(tmp_path / "model.onnx"))
    assert result.planned_macs < graph.cost().macs and result.onnx_diff is not None


def test_pruned_vit_keeps_its_output_type_and_trains():
    model, x, graph = _captured(_vit)
    pruned = rewrite(graph, random_keep(graph, np.random.default_rng(1)))
    pruned.train()
    out = pruned(x)
    assert isinstance(out, transformers.modeling_outputs.ImageClassifierOutput)
    before = {n: p.detach().clone() for n, p in pruned.named_parameters()}
    loss = nn.functional.cross_entropy(out.logits, torch.tensor([1]))
    loss.backward()
    assert all(p.grad is not None for p in pruned.parameters())
    torch.optim.SGD(pruned.parameters(), lr=0.1).step()
    assert any(not torch.equal(before[n], p) for n, p in pruned.named_parameters())
    assert nn.functional.cross_entropy(pruned(x).logits, torch.tensor([1])).item() != loss.item()


def test_pruned_vit_saves_and_loads(tmp_path):
    """A trusted reload re-traces the saved code with fx (no export tracer needed); the outputs agree.

    NOTE: fx pickling drops the output structure, so the reloaded model returns the ModelOutput's fields
    as a plain dict; ``out["logits"]`` reads both."""
    from graphprune.export.saving import load_pruned, save_pruned

    model, x, graph = _captured(_vit)
    pruned = rewrite(graph, random_keep(graph, np.random.default_rng(0))).eval()
    loaded = load_pruned(save_pruned(pruned, tmp_path / "vit.pt"), trusted=True)
    with torch.no_grad():
        assert torch.equal(loaded(x)["logits"], pruned(x)["logits"])


def test_users_model_is_untouched():
    torch.manual_seed(0)
    model, x = _vit()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    graph = build_dependency_graph(capture_with_export(model, x))
    pruned = rewrite(graph, random_keep(graph, np.random.default_rng(0)))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert pruned.training  # the user's mode comes back on the result
    shared = {id(p) for p in model.parameters()}
    assert not any(id(p) in shared for p in pruned.parameters())


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        return y if bool(y.sum() > 0) else -y


def test_export_failure_names_the_innermost_module_and_a_way_through():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), _DataDependent()))
    with pytest.raises(TraceError, match=r"could not capture module '1.1' \(_DataDependent\)[\s\S]*"
                                         r"test_export_capture.py:\d+ in forward[\s\S]*leaf_modules=\['1.1'\]"):
        capture_with_export(model, torch.randn(2, 4))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class _TensorAttribute(nn.Module):
    def __init__(self, with_arange: bool):
        super().__init__()
        self.a, self.b, self.with_arange = nn.Linear(4, 6), nn.Linear(6, 2), with_arange
        self.scale = torch.rand(6) + 0.5  # a plain attribute: neither parameter nor buffer

    def forward(self, x):
        h = self.a(x) * self.scale
        return self.b(h + torch.arange(6.0) if self.with_arange else h)


def test_tensor_attribute_becomes_a_buffer_sliced_with_its_channels():
    model, x = _TensorAttribute(with_arange=False).eval(), torch.randn(2, 4)
    graph = build_dependency_graph(capture_with_export(model, x))
    assert Dim("@scale", 0) in _group_with(graph, "a.weight").members
    result = check_rewrite(model, x, graph=graph)
    assert result.pruned.scale.shape == result.pruned.a.bias.shape != model.scale.shape


def test_tensor_made_in_forward_freezes_the_channels_it_meets():
    model, x = _TensorAttribute(with_arange=True).eval(), torch.randn(2, 4)
    graph = build_dependency_graph(capture_with_export(model, x))
    assert not graph.groups
    assert any("aten.arange" in r for r in _frozen_reasons(graph, "a.weight", 0))


class _Flip(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.b(torch.flip(self.a(x), dims=[-1]))


def test_op_without_a_rule_freezes_its_channels_with_the_reason():
    graph = build_dependency_graph(capture_with_export(_Flip(), torch.randn(2, 4)))
    assert not graph.groups
    assert any("aten.flip" in r and "no channel rule" in r for r in _frozen_reasons(graph, "a.weight", 0))


class _AutocastOff(nn.Module):
    """A region with autocast switched off (as in EfficientViT's attention): export wraps it in a submodule."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)
        with torch.autocast("cpu", enabled=False):
            h = torch.relu(h.float()) * 2.0
        return self.b(h)


def test_autocast_off_region_is_inlined_and_prunable():
    model, x = _AutocastOff().eval(), torch.randn(2, 4)
    traced = capture_with_export(model, x)
    assert not any(type(n.target).__name__ == "WrapWithAutocast" for n in traced.gm.graph.nodes)
    graph = build_dependency_graph(traced)
    assert _group_with(graph, "a.weight").n_units == 6
    check_rewrite(model, x, graph=graph)


class _NoGrad(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)

    def forward(self, x):
        with torch.no_grad():
            scale = self.a(x).abs().mean()
        return self.a(x) * scale


def test_grad_mode_region_is_refused_with_the_node_named():
    with pytest.raises(TraceError, match="cannot prune through"):
        capture_with_export(_NoGrad(), torch.randn(2, 4))


@pytest.mark.parametrize("name", ["mobilevitv2_050", "efficientvit_b0"])
def test_timm_models_fx_cannot_trace_pass_the_oracle(name):
    torch.manual_seed(0)
    model, x = randomize_(timm.create_model(name, pretrained=False).eval()), torch.randn(1, 3, 64, 64)
    with pytest.raises(TraceError):
        trace(model, x)
    graph = build_dependency_graph(capture_with_export(model, x))
    result = check_rewrite(model, x, graph=graph, p_keep=0.6, rtol=1e-4)
    assert result.planned_macs < 0.9 * graph.cost().macs
