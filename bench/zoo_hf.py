"""The ``hf:`` family of ``bench/zoo.py``: 12 Hugging Face transformers tiny configs, and Torch-Pruning on them.

``hf:NAME`` (``NAME`` in ``CONFIGS``) is built by ``graphprune.models_hf.build_hf_model`` (random weights, no
download, example input from the config: ``input_ids`` of ``SEQ`` tokens, ``pixel_values`` of the config's
image size, or Whisper's mel frames).  The dims are small (hidden 64, 2 layers) so the whole family runs in
minutes on two shared cores; the coverage question — which tool prunes which architecture — does not depend on size.

Torch-Pruning 1.6 runs with the recipe its documentation gives for attention (``num_heads`` per q/k/v Linear,
``prune_head_dims=True``, ``prune_num_heads=False``, ``output_transform`` to the first output tensor), the
final projection (classifier / LM head) ignored, ``pruning_ratio=0.5`` per layer; after ``step()`` the attention
modules' head-size attributes are set from the pruned q width, as its HF examples do.  Its result counts as OK when
the pruned model runs and returns the dense model's output shape.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

HF = "hf:"  # zoo names with this prefix come from CONFIGS
SEQ = 32

_LAYERS = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
_TEXT = dict(vocab_size=128, max_position_embeddings=64)


def _configs() -> dict:
    import transformers as hf

    decoder = dict(**_LAYERS, **_TEXT, num_key_value_heads=2)
    return {
        "vit": (hf.ViTConfig(**_LAYERS, image_size=64, patch_size=8, num_labels=10), "ViTForImageClassification"),
        "deit": (hf.DeiTConfig(**_LAYERS, image_size=64, patch_size=8, num_labels=10), "DeiTForImageClassification"),
        "swin": (hf.SwinConfig(embed_dim=32, depths=[2, 2], num_heads=[2, 4], image_size=64, patch_size=4,
                               window_size=4, num_labels=10), "SwinForImageClassification"),
        "bert": (hf.BertConfig(**_LAYERS, **_TEXT, num_labels=10), "BertForSequenceClassification"),
        "roberta": (hf.RobertaConfig(**_LAYERS, vocab_size=128, max_position_embeddings=72, pad_token_id=1,
                                     num_labels=10), "RobertaForSequenceClassification"),
        "distilbert": (hf.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128, vocab_size=128,
                                           max_position_embeddings=64, num_labels=10),
                       "DistilBertForSequenceClassification"),
        "gpt2": (hf.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64, bos_token_id=0,
                               eos_token_id=0), "GPT2LMHeadModel"),
        "llama": (hf.LlamaConfig(**decoder), "LlamaForCausalLM"),
        "qwen2": (hf.Qwen2Config(**decoder), "Qwen2ForCausalLM"),
        "mistral": (hf.MistralConfig(**decoder, head_dim=16), "MistralForCausalLM"),
        "t5_encoder": (hf.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=128,
                                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0), "T5EncoderModel"),
        "whisper_encoder": (hf.WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4,
                                             encoder_ffn_dim=128, decoder_layers=1, decoder_attention_heads=4,
                                             decoder_ffn_dim=128, num_mel_bins=32, max_source_positions=32,
                                             vocab_size=128, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                                             decoder_start_token_id=0, num_labels=10),
                            "WhisperForAudioClassification"),
    }


NAMES = ("vit", "deit", "swin", "bert", "roberta", "distilbert", "gpt2", "llama", "qwen2", "mistral",
         "t5_encoder", "whisper_encoder")


def build(name: str, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    """``hf:NAME`` -> (model in eval mode, example input), the same for the same seed."""
    from graphprune.models_hf import build_hf_model

    config, architecture = _configs()[name[len(HF):]]
    config.architectures = [architecture]
    built = build_hf_model(config, seq=SEQ, seed=seed)
    return built.model, built.example_input


def params_m(name: str) -> float:
    model, _ = build(name)
    return sum(p.numel() for p in model.parameters()) / 1e6


def first(y) -> torch.Tensor:
    """The first output of a model: a tensor, a tuple's first item, or a ModelOutput's / dict's first value."""
    if isinstance(y, dict):
        return next(iter(y.values()))
    return y[0] if isinstance(y, (tuple, list)) else y


# ------------------------------------------------------------------------------------ Torch-Pruning recipe

_QKV = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q", "k", "v"))
_HEADS = ("num_heads", "num_attention_heads", "n_heads", "n_head")
_KV_HEADS = ("num_key_value_heads", "num_kv_heads")
_HEAD_SIZE = ("head_dim", "attention_head_size", "key_value_proj_dim", "dim_per_head")
_ALL_HEAD_SIZE = ("all_head_size", "inner_dim")


def _heads_of(module, config) -> tuple[int, int] | None:
    heads = next((getattr(o, a) for o in (module, config) for a in _HEADS if isinstance(getattr(o, a, None), int)),
                 None)
    if heads is None:
        return None
    kv = next((getattr(o, a) for o in (module, config) for a in _KV_HEADS if isinstance(getattr(o, a, None), int)),
              heads)
    return heads, kv


def attention_projections(model: torch.nn.Module) -> list[tuple[torch.nn.Module, tuple]]:
    """Every attention module with separate q/k/v Linears, with those Linears (GPT-2's fused c_attn has none)."""
    found = []
    for module in model.modules():
        for names in _QKV:
            layers = tuple(getattr(module, n, None) for n in names)
            if all(isinstance(layer, torch.nn.Linear) for layer in layers):
                found.append((module, layers))
                break
    return found


@dataclass
class HFTpRun:
    seconds: float
    error: str = ""


def _output_layer(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The final projection(s) to ignore: classifier / LM head / Whisper's projector + classifier."""
    heads = {"classifier", "lm_head", "projector"}
    return [m for n, m in model.named_modules() if heads & set(n.split(".")) and isinstance(m, torch.nn.Linear)]


def torch_pruning_prune(model: torch.nn.Module, x: torch.Tensor, ratio: float = 0.5) -> HFTpRun:
    """Torch-Pruning's documented HF recipe on ``model`` (in place; module docstring)."""
    import torch_pruning as tp

    config = getattr(model, "config", None)
    attention = attention_projections(model)
    num_heads = {}
    for module, (q, k, v) in attention:
        heads = _heads_of(module, config)
        if heads:
            num_heads.update({q: heads[0], k: heads[1], v: heads[1]})
    t = time.perf_counter()
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=ratio, global_pruning=False, ignored_layers=_output_layer(model),
                                  output_transform=first, num_heads=num_heads,
                                  prune_head_dims=True, prune_num_heads=False)
    pruner.step()
    seconds = time.perf_counter() - t
    for module, (q, k, v) in attention:
        heads = pruner.num_heads.get(q) if hasattr(pruner, "num_heads") else None
        heads = heads or (_heads_of(module, config) or (1, 1))[0]
        for attr in _HEAD_SIZE:
            if isinstance(getattr(module, attr, None), int):
                setattr(module, attr, q.out_features // heads)
        for attr in _ALL_HEAD_SIZE:
            if isinstance(getattr(module, attr, None), int):
                setattr(module, attr, q.out_features)
    return HFTpRun(seconds)
