"""bench/finetune_transformers.py, a few steps on tiny configs: dense → pruned (export front end) → fine-tuned."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from graphprune.data import synthetic

REPO = Path(__file__).resolve().parents[2]
transformers = pytest.importorskip("transformers")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_finetune_transformers",
                                                  REPO / "bench" / "finetune_transformers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_vit_protocol_prunes_finetunes_and_controls():
    bench = _bench()
    sizing = bench.Sizing(steps=3, batch=8, lr=1e-3, warmup=1)
    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    task = bench.vit_task(synthetic(40, shape=(1, 28, 28)), synthetic(20, shape=(1, 28, 28), noise_seed=9), sizing,
                          tiny)
    row = bench.run_task(task, sizing, control=True, onnx=False, log=lambda *_: None)
    assert row.front_end == "export" and row.macs_ratio <= bench.BUDGET + 1e-9
    assert row.params_pruned < row.params_dense
    for scores in (row.dense, row.pruned_before, row.pruned_after, row.scratch):
        assert 0.0 <= scores["accuracy"] <= 1.0  # 20 test images in 3 batches of 8: the last padded, not counted
    assert set(row.train_seconds) == {"dense", "finetune", "dense_2n", "scratch"}
    assert 0.0 <= row.dense_2n["accuracy"] <= 1.0


def test_pruned_llama_trains_at_the_captured_shape():
    bench = _bench()
    sizing = bench.Sizing(steps=8, batch=4, lr=5e-3, warmup=1)
    # NOTE: wide enough that the byte vocabulary's frozen head (256 x hidden) leaves 0.5 of the MACs reachable
    tiny = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=256)
    text = b"the quick brown fox jumps over the lazy dog. " * 40
    task = bench.llama_task(text, sizing, seq_len=16, config=tiny)
    row = bench.run_task(task, sizing, control=False, onnx=True, log=lambda *_: None)
    assert row.front_end == "export" and row.macs_ratio <= bench.BUDGET + 1e-9
    assert row.pruned_after["val_loss"] < row.pruned_before["val_loss"]  # the pruned GraphModule learns
    assert row.recovered == bench.recovered_share(row.dense["val_loss"], row.pruned_before["val_loss"],
                                                  row.pruned_after["val_loss"])
    assert row.onnx.startswith("dynamo exporter")


def test_recovered_share_reads_the_same_for_accuracy_and_loss():
    bench = _bench()
    assert bench.recovered_share(0.9, 0.5, 0.8) == pytest.approx(0.75)  # accuracy: 0.3 of 0.4 lost came back
    assert bench.recovered_share(2.0, 3.0, 2.5) == pytest.approx(0.5)  # loss: half of the 1.0 lost came back
    assert bench.recovered_share(1.0, 1.0, 1.2) is None


def test_reinitialise_gives_fresh_hf_style_weights():
    bench = _bench()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8))
    bench.reinitialise_(model)
    assert float(model[0].weight.std()) == pytest.approx(0.02, rel=0.5)
    assert not model[0].bias.any() and torch.equal(model[1].weight, torch.ones(8)) and not model[1].bias.any()
