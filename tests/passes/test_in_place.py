"""passes/in_place.py: ``prune`` hands back the user's own class when the model's code bakes no pruned size.

Each model: the result is an instance of the user's (sub)class with its extra method, ``state_dict()`` keys are
the original's, outputs equal the masked reference (the original with removed channels zeroed), ONNX Runtime
agrees, and the saved ``state_dict`` loads into a freshly built instance via ``rebuild_like``.  Code that bakes
a size falls back to the GraphModule with the reason, and ``output="module"`` refuses it.
"""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphprune
from graphprune.export import check_onnx, export_onnx
from graphprune.passes.in_place import InPlaceError
from graphprune.passes.resize_modules import rebuild_like
from graphprune.testing import PATTERNS, randomize_

torchvision = pytest.importorskip("torchvision")


def _first(y):
    if isinstance(y, dict):  # a Hugging Face ModelOutput
        y = list(y.values())
    return y[0] if isinstance(y, (tuple, list)) else y


def _with_predict(model: nn.Module) -> nn.Module:
    """The user's model as an instance of a subclass with one more method (what in-place must keep)."""
    cls = type(model)
    model.__class__ = type(f"My{cls.__name__}", (cls,), {"predict": lambda self, x: _first(self(x)).argmax(-1)})
    return model


def _assert_mask_equivalent(result, x, rtol: float = 1e-5) -> None:
    masked = graphprune.masked_model(result.graph, result.plan.keep_mask(result.graph)).eval()
    with torch.no_grad():
        got, want = _first(result.model(x)), _first(masked(x))
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) <= rtol * max(scale, 1.0)


def _resnet50():
    return torchvision.models.resnet50(weights=None), torch.randn(1, 3, 64, 64)


def _mobilenet_v3():
    return torchvision.models.mobilenet_v3_small(weights=None), torch.randn(1, 3, 64, 64)


def _convnext():
    timm = pytest.importorskip("timm")
    return timm.create_model("convnext_atto", pretrained=False), torch.randn(1, 3, 64, 64)


def _bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(cfg), torch.randint(0, 100, (1, 16))


@pytest.mark.parametrize("build, onnx", [(_resnet50, False), (_mobilenet_v3, True), (_convnext, True),
                                         (_bert, True)], ids=["resnet50", "mobilenet_v3", "convnext", "bert"])
def test_model_comes_back_as_its_own_class(build, onnx, tmp_path):
    torch.manual_seed(0)
    model, x = build()
    model = _with_predict(randomize_(model).eval())
    before = copy.deepcopy(model.state_dict())
    result = graphprune.prune(model, 0.5, x, return_result=True)
    pruned = result.model
    assert result.report.output_kind == "module", result.report.output_reason
    assert type(pruned) is type(model) and pruned is not model
    assert pruned.predict(x).shape == _first(model(x)).argmax(-1).shape
    assert list(pruned.state_dict()) == list(before)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the user's model untouched
    _assert_mask_equivalent(result, x)
    if onnx:
        check = check_onnx(pruned, x, export_onnx(pruned, x, tmp_path / "m.onnx"))
        assert check.max_abs_diff <= 1e-4
    torch.manual_seed(1)  # a freshly built instance with other weights: every value comes from the state_dict
    fresh = rebuild_like(build()[0].eval(), pruned.state_dict(), attributes=result.report.size_attributes)
    with torch.no_grad():
        torch.testing.assert_close(_first(fresh(x)), _first(pruned(x)), rtol=0, atol=0)


def test_bert_config_states_the_uniform_widths():
    torch.manual_seed(0)
    model, x = _bert()
    result = graphprune.prune(randomize_(model).eval(), 0.5, x, front_end="export", return_result=True)
    pruned = result.model
    assert pruned.config is not model.config and model.config.hidden_size == 64
    assert pruned.config.hidden_size == pruned.get_input_embeddings().embedding_dim < 64
    widths = {layer.intermediate.dense.out_features for layer in pruned.bert.encoder.layer}
    if len(widths) == 1:
        assert pruned.config.intermediate_size == widths.pop()
    else:  # one number cannot state several widths: left, and the note says how to rebuild
        assert any("rebuild_like" in note for note in result.report.output_notes)


def test_bert_with_pruned_head_dims_falls_back_with_the_module_named():
    torch.manual_seed(0)
    model, x = _bert()
    result = graphprune.prune(randomize_(model).eval(), 0.5, x, round_to=1, front_end="export", return_result=True)
    assert result.report.output_kind == "graph" and isinstance(result.model, torch.fx.GraphModule)
    assert "BertSelfAttention" in result.report.output_reason  # its head size is fixed by the config
    _assert_mask_equivalent(result, x)


class _Baked(nn.Module):
    """Flattens with a literal: the pruned width of ``conv`` is baked into ``forward``."""

    def __init__(self, flatten_literal: bool = True):
        super().__init__()
        self.flatten_literal = flatten_literal
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.bn(self.conv(x))), 1)
        return self.fc(x.view(-1, 16) if self.flatten_literal else x.flatten(1))


def test_baked_size_falls_back_to_the_graph_with_the_reason():
    torch.manual_seed(0)
    model, x = randomize_(_Baked()).eval(), torch.randn(2, 3, 8, 8)
    result = graphprune.prune(model, 0.5, x, round_to=1, return_result=True)
    assert isinstance(result.model, torch.fx.GraphModule) and result.report.output_kind == "graph"
    assert ("node 'view' (call_method view): the model's code passes ('adaptive_avg_pool2d', -1, 16) where the "
            "pruned widths need ('adaptive_avg_pool2d', -1, 8)") in result.report.output_reason
    assert "baked" in result.report.output_reason and not result.report.size_attributes
    _assert_mask_equivalent(result, x)
    with pytest.raises(InPlaceError, match=r"(?s)node 'view'.*baked.*output='graph'"):
        graphprune.prune(model, 0.5, x, round_to=1, output="module")


def test_size_read_from_the_tensor_stays_in_place():
    torch.manual_seed(0)
    model, x = randomize_(_Baked(flatten_literal=False)).eval(), torch.randn(2, 3, 8, 8)
    result = graphprune.prune(model, 0.5, x, round_to=1, output="module", return_result=True)
    assert type(result.model) is _Baked and result.model.fc.in_features == result.model.conv.out_channels < 16
    assert result.model.bn.num_features == result.model.conv.out_channels
    _assert_mask_equivalent(result, x)


class _SizeInAttribute(_Baked):
    """Flattens with a size held in an int attribute (as torchvision ViT's ``hidden_dim``); ``unrelated`` has
    the same value and is never read by ``forward``."""

    def __init__(self):
        super().__init__()
        self.unrelated = 16
        self.width = 16

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.bn(self.conv(x))), 1)
        return self.fc(x.view(-1, self.width))


def test_size_held_in_an_int_attribute_is_set_and_proven():
    torch.manual_seed(0)
    model, x = randomize_(_SizeInAttribute()).eval(), torch.randn(2, 3, 8, 8)
    result = graphprune.prune(model, 0.5, x, round_to=1, return_result=True)
    width = result.model.conv.out_channels
    assert result.report.output_kind == "module" and result.report.size_attributes == {"width": width}
    assert result.model.width == width < 16 and model.width == 16
    assert result.model.unrelated == 16  # tried first (same value), put back: the graph did not change
    assert any(note.startswith(f"width 16 -> {width}") for note in result.report.output_notes)
    _assert_mask_equivalent(result, x)
    fresh = rebuild_like(_SizeInAttribute().eval(), result.model.state_dict(),
                         attributes=result.report.size_attributes)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), result.model(x), rtol=0, atol=0)


def test_training_flags_and_hooks_follow_the_graph_policy():
    torch.manual_seed(0)
    model, x = randomize_(_Baked(flatten_literal=False)), torch.randn(2, 3, 8, 8)
    model.train()
    model.bn.eval()  # a frozen BatchNorm stays frozen
    model.fc.register_forward_hook(lambda m, i, o: o + 1)
    with pytest.warns(UserWarning, match="hooks were not carried over"):
        pruned = graphprune.prune(model, 0.5, x, round_to=1)
    assert type(pruned) is _Baked
    assert {n: m.training for n, m in pruned.named_modules()} == {n: m.training for n, m in model.named_modules()}
    assert not pruned.fc._forward_hooks and len(model.fc._forward_hooks) == 1
    kept = graphprune.prune(model, 0.5, x, round_to=1, keep_hooks=True)
    assert type(kept) is _Baked and len(kept.fc._forward_hooks) == 1


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_patterns_in_place_or_graph_both_mask_equivalent(pattern):
    """Every coupling pattern: the automatic choice is mask-equivalent either way; the patterns whose code
    bakes sizes (literal chunk sizes, head reshapes) fall back with a reason."""
    torch.manual_seed(0)
    model, x = randomize_(pattern.build()).eval(), pattern.make_input()
    result = graphprune.prune(model, 0.5, x, round_to=1, return_result=True)
    assert (result.report.output_kind == "module") == (type(result.model) is type(model))
    assert result.report.output_kind == "module" or result.report.output_reason
    if pattern.name in ("shuffle_split_concat", "res2net_split_negative_index", "heads_reshape_sdpa"):
        assert result.report.output_kind == "graph"
    if pattern.name in ("residual", "inverted_residual_depthwise", "grouped_conv", "vit_multihead_attention",
                        "norms_gn_in_ln_prelu", "decoder_transpose_upsample_slice", "text_embedding_einsum"):
        assert result.report.output_kind == "module", result.report.output_reason
    _assert_mask_equivalent(result, x, rtol=1e-5 if pattern.exact else 1e-4)
