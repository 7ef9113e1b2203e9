"""passes/hf_config.py: the config fields a pruned Hugging Face model can still state truthfully."""
import pytest
import torch.nn as nn

from graphprune.passes.hf_config import is_hf_model, update_config

transformers = pytest.importorskip("transformers")


def _bert(layers: int = 2):
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32)
    return transformers.BertModel(cfg)


def test_plain_modules_are_not_hf_models():
    assert not is_hf_model(nn.Linear(2, 2)) and update_config(nn.Linear(2, 2)) == []
    assert is_hf_model(_bert())


def test_one_width_everywhere_is_written_to_the_config():
    model = _bert()
    model.embeddings.word_embeddings = nn.Embedding(100, 48)
    for layer in model.encoder.layer:
        layer.intermediate.dense = nn.Linear(64, 96)
    notes = update_config(model)
    assert (model.config.hidden_size, model.config.intermediate_size) == (48, 96)
    assert notes == ["config.hidden_size 64 -> 48", "config.intermediate_size 128 -> 96"]


def test_different_widths_leave_the_field_and_say_how_to_rebuild():
    model = _bert()
    model.encoder.layer[0].intermediate.dense = nn.Linear(64, 96)
    notes = update_config(model)
    assert model.config.intermediate_size == 128
    assert notes == ["config.intermediate_size left at 128: the layers have widths [96, 128]; build a fresh "
                     "instance with graphprune.rebuild_like(model, state_dict)"]
