"""Hugging Face models from local configs: ``graphprune.models_hf`` and ``graphprune prune hf:CONFIG``.

Every config here is written to ``tmp_path`` by ``save_pretrained``: nothing is downloaded.
"""
import json

import pytest
import torch
import transformers as hf

from graphprune.cli import main
from graphprune.cli.errors import CliError
from graphprune.cli.models import load_model
from graphprune.models_hf import HFConfigError, build_hf_model, load_hf_config


def _llama(tmp_path, **extra):
    config = hf.LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=64, vocab_size=64, max_position_embeddings=24,
                            architectures=["LlamaForCausalLM"], **extra)
    config.save_pretrained(tmp_path)
    return tmp_path


def _vit(tmp_path):
    hf.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, image_size=16,
                 patch_size=8, num_labels=3, architectures=["ViTForImageClassification"]).save_pretrained(tmp_path)
    return tmp_path


def test_text_model_gets_input_ids_of_the_asked_length_from_a_directory_or_its_file(tmp_path):
    folder = _llama(tmp_path)
    for path in (folder, folder / "config.json"):
        built = build_hf_model(path, seq=10, seed=3)
        assert type(built.model).__name__ == built.architecture == "LlamaForCausalLM"
        assert built.input_name == "input_ids" and built.example_input.shape == (1, 10)
        assert built.example_input.dtype == torch.int64 and int(built.example_input.max()) < 64
        assert not built.model.training and built.model.config.use_cache is False
    again = build_hf_model(folder, seq=10, seed=3)
    assert torch.equal(again.example_input, built.example_input)
    assert all(torch.equal(a, b) for a, b in zip(again.model.parameters(), built.model.parameters()))


def test_image_model_gets_pixel_values_of_its_image_size(tmp_path):
    built = build_hf_model(_vit(tmp_path))
    assert built.input_name == "pixel_values" and built.example_input.shape == (1, 3, 16, 16)


def test_without_architectures_the_backbone_is_built(tmp_path):
    hf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                  vocab_size=50).save_pretrained(tmp_path)
    assert load_hf_config(tmp_path).architectures is None
    assert build_hf_model(tmp_path).architecture == "BertModel"


def test_encoder_decoder_is_refused_with_the_encoder_only_class_to_use(tmp_path):
    hf.T5Config(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, vocab_size=50,
                architectures=["T5ForConditionalGeneration"]).save_pretrained(tmp_path)
    with pytest.raises(HFConfigError, match=r"needs decoder inputs[\s\S]*T5EncoderModel"):
        build_hf_model(tmp_path)


def test_sequence_longer_than_the_positions_is_refused(tmp_path):
    with pytest.raises(HFConfigError, match="longer than the model's 24 positions"):
        build_hf_model(_llama(tmp_path), seq=25)


def test_missing_or_unreadable_config_is_a_clear_error(tmp_path):
    with pytest.raises(HFConfigError, match="no Hugging Face config"):
        load_hf_config(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    with pytest.raises(HFConfigError, match="not a config transformers"):
        load_hf_config(tmp_path)
    with pytest.raises(CliError, match="hf:"):
        load_model(f"hf:{tmp_path}")


def test_cli_input_shape_sets_batch_and_sequence(tmp_path):
    model, x = load_model(f"hf:{_llama(tmp_path)}", input_shape=(2, 7))
    assert x.shape == (2, 7) and x.dtype == torch.int64
    with pytest.raises(CliError, match="--seq is for hf"):
        load_model("torchvision:resnet18", seq=8)


def test_cli_prunes_an_hf_config_through_torch_export(tmp_path, capsys):
    report = tmp_path / "r.json"
    rc = main(["prune", f"hf:{_llama(tmp_path / 'cfg')}", "--budget", "0.5", "--seq", "12",
               "--report", str(report), "--save", str(tmp_path / "m.pt")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "torch.export" in text
    saved = json.loads(report.read_text())
    assert 0.4 < saved["macs_ratio"] <= 0.5
    assert (tmp_path / "m.pt").exists()


def test_cli_inspects_an_hf_image_config(tmp_path, capsys):
    assert main(["inspect", f"hf:{_vit(tmp_path)}"]) == 0
    assert "groups" in capsys.readouterr().out


def test_api_on_an_automodel_instance_with_inputs_from_its_config(tmp_path):
    import torch.fx

    import graphprune
    from graphprune.models_hf import example_inputs_for

    config = load_hf_config(_llama(tmp_path, use_cache=False))
    model = hf.AutoModelForCausalLM.from_config(config).eval()
    x = example_inputs_for(config, model.main_input_name, seq=8)
    with pytest.warns(UserWarning, match="captured with torch.export"):
        result = graphprune.prune(model, 0.5, x, return_result=True)
    assert isinstance(result.model, torch.fx.GraphModule) and result.report.front_end == "export"
    assert result.report.macs_ratio <= 0.5
    with torch.no_grad():
        assert result.model(x).logits.shape == model(x).logits.shape == (1, 8, 64)
