"""The two tasks of ``bench/finetune_transformers.py``: HF ViT on Fashion-MNIST and a byte-level HF Llama on text."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Sizing:
    """How long and how wide each training run is."""

    steps: int
    batch: int
    lr: float
    warmup: int = 20
    weight_decay: float = 0.05
    seed: int = 0


@dataclass
class Task:
    """One model on one data set: how to build it, feed it, and score it (``higher_is_better`` says which way)."""

    name: str
    build: Callable[[], torch.nn.Module]
    example: torch.Tensor  # the fixed-shape input the export front end captures
    sample: Callable[[np.random.Generator], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[torch.nn.Module], dict[str, float]]
    metric: str
    higher_is_better: bool
    data: str


def logits_of(output: Any) -> torch.Tensor:
    """The logits of an HF ``ModelOutput``, a dict, a tuple or a tensor (pruned GraphModules return HF outputs)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) or hasattr(output, "keys"):
        return output["logits"]
    return output[0]


def _batches(data: torch.Tensor, batch: int):
    """Fixed-size batches over ``data``; the last one padded with repeats. Yields (batch, number of real rows)."""
    for start in range(0, len(data), batch):
        chunk = data[start:start + batch]
        real = len(chunk)
        if real < batch:
            chunk = torch.cat([chunk, chunk[torch.arange(batch - real) % real]])
        yield chunk, real


# ---- ViT on Fashion-MNIST -------------------------------------------------------------------------------------
def vit_task(train_set, test_set, sizing: Sizing, config: dict | None = None) -> Task:
    """``train_set`` / ``test_set``: ``TensorDataset`` of (N, 1, 28, 28) images and labels."""
    import transformers

    cfg = dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=192, image_size=28,
               patch_size=4, num_channels=1, num_labels=10, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.update(config or {})
    images, labels = train_set.tensors
    test_images, test_labels = test_set.tensors

    def build():
        torch.manual_seed(sizing.seed)
        return transformers.ViTForImageClassification(transformers.ViTConfig(**cfg))

    def sample(rng):
        idx = torch.from_numpy(rng.integers(0, len(images), sizing.batch))
        return images[idx], labels[idx]

    @torch.no_grad()
    def evaluate(model):
        model.eval()
        correct = 0
        for start, (chunk, real) in zip(range(0, len(test_images), sizing.batch), _batches(test_images, sizing.batch)):
            pred = logits_of(model(chunk)).argmax(-1)[:real]
            correct += int((pred == test_labels[start:start + real]).sum())
        return {"accuracy": correct / len(test_images)}

    return Task("ViT (HF ViTForImageClassification, patch 4)", build, images[:sizing.batch].clone(), sample,
                F.cross_entropy, evaluate, "accuracy", True,
                f"Fashion-MNIST 28x28: {len(images)} train / {len(test_images)} test images")


# ---- byte-level Llama on the stdlib's help() text ------------------------------------------------------------
def stdlib_help_text() -> tuple[bytes, str]:
    """The text of CPython's ``pydoc_data/topics.py`` (every topic page, sorted by name) and where it came from."""
    import pydoc_data.topics as topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return text.encode("utf-8"), topics.__file__


def llama_task(text: bytes, sizing: Sizing, seq_len: int, config: dict | None = None, source: str = "",
               val_fraction: float = 0.1) -> Task:
    """Byte-level LM: random windows of the first 90 % of ``text`` for training, the rest cut into windows."""
    import transformers

    cfg = dict(vocab_size=256, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=384, max_position_embeddings=seq_len, use_cache=False, attention_dropout=0.0,
               bos_token_id=0, eos_token_id=0, pad_token_id=0)
    cfg.update(config or {})
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
    cut = int(len(data) * (1 - val_fraction))
    train_ids, val_ids = data[:cut], data[cut:]
    n_val = (len(val_ids) - 1) // seq_len
    val_windows = torch.stack([val_ids[i * seq_len: i * seq_len + seq_len + 1] for i in range(n_val)])

    def build():
        torch.manual_seed(sizing.seed)
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))

    def sample(rng):
        starts = rng.integers(0, len(train_ids) - seq_len - 1, sizing.batch)
        windows = torch.stack([train_ids[s:s + seq_len + 1] for s in starts])
        return windows[:, :-1], windows[:, 1:]

    def loss(logits, targets):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def evaluate(model):
        model.eval()
        total, count = 0.0, 0
        for chunk, real in _batches(val_windows, sizing.batch):
            logits = logits_of(model(chunk[:, :-1]))[:real]
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:real, 1:].reshape(-1),
                                           reduction="sum"))
            count += real * seq_len
        nats = total / count
        return {"val_loss": nats, "perplexity": math.exp(nats), "bits_per_byte": nats / math.log(2)}

    example = train_ids[:sizing.batch * seq_len].reshape(sizing.batch, seq_len).clone()
    return Task("Llama byte LM (HF LlamaForCausalLM, GQA 4:2)", build, example, sample, loss, evaluate,
                "val_loss", False, f"{source or 'text'}: {len(text) / 1e3:.0f} KB, {cut} train / {len(val_ids)} "
                f"held-out bytes, windows of {seq_len}")
