"""Hugging Face transformers 5.x tiny configs (random weights, no downloads), each pruned at 0.5 of MACs.

Every family goes through ``graphprune.models_hf.build_hf_model`` (the ``hf:`` CLI path) and the public
``graphprune.prune`` with its default front end (torch.fx fails on all of them, torch.export captures them), then
the oracle on the plan ``prune`` chose:

- mask-equivalent: pruned == masked reference to 1e-5 of the output's scale (on the example input and on a
  second input of the same shape);
- MACs: graphprune's cost model == ``torch.utils.flop_counter.FlopCounterMode`` on the pruned module, to 1e-6
  relative (``check_rewrite``), and at most the 0.5 budget;
- ONNX: the pruned model exports and ONNX Runtime agrees to 1e-4 of the output's scale.

Which widths each family can lose is asserted as it is today (``HIDDEN``): models whose norm divides by the mean
over the hidden width (RMSNorm: Llama, Qwen2, Mistral, T5) keep that width whole, with the reason recorded.
"""
import warnings

import pytest
import torch
import torch.nn as nn
import transformers as hf

import graphprune
from graphprune.capture import capture_with_export
from graphprune.depgraph import Dim, build_dependency_graph
from graphprune.models_hf import build_hf_model
from graphprune.passes import masked_model
from graphprune.testing import check_rewrite, randomize_

_LAYERS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
_TEXT = dict(vocab_size=96, max_position_embeddings=32)
_DECODER = dict(**_LAYERS, **_TEXT, num_key_value_heads=2)  # GQA: 2 query heads per kv head

# family -> (config, architecture); image_size 40 with patch 4 makes Swin pad its 10x10 patches to 12x12 (windows of 4)
CONFIGS = {
    "vit": (hf.ViTConfig(**_LAYERS, image_size=32, patch_size=8, num_labels=3), "ViTForImageClassification"),
    "deit": (hf.DeiTConfig(**_LAYERS, image_size=32, patch_size=8, num_labels=3), "DeiTForImageClassification"),
    "swin": (hf.SwinConfig(embed_dim=16, depths=[1, 1], num_heads=[2, 4], image_size=40, patch_size=4,
                           window_size=4, num_labels=3), "SwinForImageClassification"),
    "bert": (hf.BertConfig(**_LAYERS, **_TEXT, num_labels=3), "BertForSequenceClassification"),
    "roberta": (hf.RobertaConfig(**_LAYERS, vocab_size=96, max_position_embeddings=40, pad_token_id=1, num_labels=3),
                "RobertaForSequenceClassification"),
    "distilbert": (hf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=96,
                                       max_position_embeddings=32, num_labels=3), "DistilBertForSequenceClassification"),
    "gpt2": (hf.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=96, n_positions=32, bos_token_id=0,
                           eos_token_id=0), "GPT2LMHeadModel"),
    "llama": (hf.LlamaConfig(**_DECODER), "LlamaForCausalLM"),
    "qwen2": (hf.Qwen2Config(**_DECODER), "Qwen2ForCausalLM"),
    "mistral": (hf.MistralConfig(**_DECODER, head_dim=8), "MistralForCausalLM"),
    "t5_encoder": (hf.T5Config(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=96, pad_token_id=0,
                               eos_token_id=1, decoder_start_token_id=0), "T5EncoderModel"),
    "whisper_encoder": (hf.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                                         decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
                                         num_mel_bins=16, max_source_positions=16, vocab_size=96, pad_token_id=0,
                                         bos_token_id=0, eos_token_id=0, decoder_start_token_id=0, num_labels=3),
                        "WhisperForAudioClassification"),
}

# family -> (a parameter holding the hidden width, its axis, prunable?, the frozen reason's op when not)
HIDDEN = {
    "vit": ("vit.embeddings.patch_embeddings.projection.weight", 0, True, None),
    "deit": ("deit.embeddings.patch_embeddings.projection.weight", 0, True, None),
    "swin": ("swin.embeddings.patch_embeddings.projection.weight", 0, True, None),
    "bert": ("bert.embeddings.word_embeddings.weight", 1, True, None),
    "roberta": ("roberta.embeddings.word_embeddings.weight", 1, True, None),
    "distilbert": ("distilbert.embeddings.word_embeddings.weight", 1, True, None),
    "gpt2": ("transformer.wte.weight", 1, True, None),
    "llama": ("model.embed_tokens.weight", 1, False, "aten.mean.dim"),
    "qwen2": ("model.embed_tokens.weight", 1, False, "aten.mean.dim"),
    "mistral": ("model.embed_tokens.weight", 1, False, "aten.mean.dim"),
    "t5_encoder": ("shared.weight", 1, False, "aten.mean.dim"),
    "whisper_encoder": ("encoder.conv2.weight", 0, True, None),
}


def _built(family: str):
    config, architecture = CONFIGS[family]
    config.architectures = [architecture]
    built = build_hf_model(config, seq=16)
    assert built.architecture == architecture
    return randomize_(built.model), built.example_input


def _second_input(x: torch.Tensor, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(x.shape, generator=g) if x.is_floating_point() else torch.randint(0, vocab, x.shape,
                                                                                         generator=g)


def _first(y):
    return (list(y.values()) if isinstance(y, dict) else y)[0]


@pytest.mark.parametrize("family", list(CONFIGS))
def test_family_prunes_at_half_macs_and_passes_the_oracle(family, tmp_path):
    model, x = _built(family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = graphprune.prune(model, 0.5, x, return_result=True)
    assert result.report.front_end == "export"
    assert any("captured with torch.export" in str(w.message) for w in caught)
    assert 0.4 < result.report.macs_ratio <= 0.5 and result.report.groups_pruned > 0
    keep = result.plan.keep_mask(result.graph)
    oracle = check_rewrite(model, x, keep=keep, graph=result.graph, rtol=1e-5,
                           onnx_path=str(tmp_path / f"{family}.onnx"))
    assert oracle.planned_macs == pytest.approx(result.report.macs, rel=1e-9)
    assert oracle.counted_params < sum(p.numel() for p in model.parameters())
    assert oracle.onnx_diff is not None
    # the model prune returned is the one the oracle rebuilt, and agrees with the reference on new data too
    x2 = _second_input(x, getattr(model.config, "vocab_size", 2))
    reference = masked_model(result.graph, keep).eval()
    with torch.no_grad():
        got, again, want = _first(result.model.eval()(x2)), _first(oracle.pruned(x2)), _first(reference(x2))
    assert torch.equal(got, again)
    assert (got - want).abs().max() <= 1e-5 * max(float(want.abs().max()), 1.0)


@pytest.mark.parametrize("family", list(CONFIGS))
def test_family_hidden_width_is_pruned_or_frozen_with_its_reason(family):
    model, x = _built(family)
    graph = build_dependency_graph(capture_with_export(model, x))
    param, axis, prunable, reason_op = HIDDEN[family]
    dim = Dim(f"@{param}", axis)
    groups = [g for g in graph.groups if dim in g.members]
    if prunable:
        assert len(groups) == 1 and groups[0].n_units == model.get_parameter(param).shape[axis]
    else:
        assert not groups
        assert any(reason_op in f.reason for f in graph.frozen if dim in f.dims)


class _ChannelsLastPad(nn.Module):
    """Pads the two spatial axes of a (B, H, W, C) tensor, as Swin pads its patches up to whole windows."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.b(nn.functional.pad(self.a(x), (0, 0, 0, 1, 0, 2)))


def test_pad_keeps_the_channels_of_an_axis_padded_by_zero():
    model, x = _ChannelsLastPad().eval(), torch.randn(1, 3, 3, 4)
    graph = build_dependency_graph(capture_with_export(model, x))
    assert [g.n_units for g in graph.groups if Dim("@a.weight", 0) in g.members] == [6]
    check_rewrite(model, x, graph=graph)
