"""Hugging Face transformers models built from a local config, with example inputs made from that config.

This is what ``graphprune prune hf:<config.json or directory>`` runs, and what a user with an ``AutoModel``-built
instance can call for inputs (``example_inputs_for``).  Nothing is downloaded: the config is read with
``local_files_only=True`` and the model gets random weights (``from_config``).

Rules (``build_hf_model``):

1. The class is ``config.architectures[0]`` when transformers has it (``BertForSequenceClassification``,
   ``T5EncoderModel`` …), else ``AutoModel`` (the bare backbone).
2. ``use_cache`` is switched off: a key/value cache is an extra output that depends on the call, not a layer.
3. The example input is the class's ``main_input_name``, shaped from the config:
   ``input_ids`` (batch, seq) of token ids below ``vocab_size``; ``pixel_values`` (batch, num_channels,
   image_size, image_size); ``input_features`` (batch, num_mel_bins, 2 * max_source_positions), the
   Whisper encoder's mel frames; ``input_values`` (batch, seq) raw audio.
4. An encoder-decoder class (``T5ForConditionalGeneration``, ``WhisperModel`` …) needs decoder inputs too, so it is
   refused with the encoder-only classes to put in ``architectures`` instead.

NOTE: ``graphprune.prune`` on these models returns a ``torch.fx.GraphModule`` captured by ``torch.export``
(transformers 5.x cannot be traced by torch.fx): its forward is the exported aten graph, fixed to the example
inputs' shapes, so it has no ``config`` and no ``generate``; the kept widths are in the plan and the report.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["HFModel", "HFConfigError", "load_hf_config", "hf_model_class", "example_inputs_for", "build_hf_model"]

DEFAULT_SEQ = 16


class HFConfigError(ValueError):
    """A config that cannot be built into a model with example inputs; the message says what to change."""


@dataclass(frozen=True)
class HFModel:
    """A randomly initialised transformers model (eval mode) and one example input for it."""

    model: torch.nn.Module
    example_input: torch.Tensor
    input_name: str  # the forward argument the example input is for (``main_input_name``)
    architecture: str  # the class that was built


def load_hf_config(path: str | Path):
    """The ``PretrainedConfig`` in ``path`` (a ``config.json`` or a directory holding one), read offline."""
    import transformers

    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise HFConfigError(f"no Hugging Face config at {path}: pass a config.json or a directory that holds one")
    try:
        return transformers.AutoConfig.from_pretrained(str(file if path.is_file() else path),
                                                       local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        raise HFConfigError(f"{file} is not a config transformers {transformers.__version__} can read: "
                            f"{str(exc).splitlines()[0][:200]}") from None


def hf_model_class(config) -> type:
    """The class to build (module docstring, rules 1 and 4)."""
    import transformers

    names = list(getattr(config, "architectures", None) or [])
    cls = next((getattr(transformers, n) for n in names if hasattr(transformers, n)), None)
    if cls is None:
        if type(config) not in transformers.MODEL_MAPPING:
            raise HFConfigError(f"transformers has no model for config {type(config).__name__} "
                                f"(architectures {names}): set 'architectures' to a class transformers exports")
        cls = transformers.MODEL_MAPPING[type(config)]
    if getattr(config, "is_encoder_decoder", False) and not _encoder_only(cls):
        raise HFConfigError(f"{cls.__name__} is an encoder-decoder model that needs decoder inputs too: set "
                            "'architectures' to an encoder-only class, e.g. ['T5EncoderModel'] or "
                            "['WhisperForAudioClassification']")
    return cls


def _encoder_only(cls: type) -> bool:
    """Whether ``cls.forward`` runs without decoder inputs (it has no ``decoder_input_ids`` argument)."""
    return "decoder_input_ids" not in inspect.signature(cls.forward).parameters


def _side(value) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def example_inputs_for(config, input_name: str, seq: int = DEFAULT_SEQ, batch: int = 1, seed: int = 0
                       ) -> torch.Tensor:
    """An example input named ``input_name`` shaped from ``config`` (module docstring, rule 3)."""
    g = torch.Generator().manual_seed(seed)
    if input_name == "input_ids":
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if limit and seq > limit:
            raise HFConfigError(f"--seq {seq} is longer than the model's {limit} positions: pass --seq <= {limit}")
        return torch.randint(0, config.vocab_size, (batch, seq), generator=g)
    if input_name == "pixel_values":
        side = _side(config.image_size)
        return torch.randn(batch, getattr(config, "num_channels", 3), side, side, generator=g)
    if input_name == "input_features":
        return torch.randn(batch, config.num_mel_bins, 2 * config.max_source_positions, generator=g)
    if input_name == "input_values":
        return torch.randn(batch, seq, generator=g)
    raise HFConfigError(f"no example input for a model whose main input is {input_name!r}: build the model and "
                        "its inputs yourself and call graphprune.prune on them")


def build_hf_model(config_or_path, seq: int = DEFAULT_SEQ, batch: int = 1, seed: int = 0) -> HFModel:
    """Build the model of a config (or a config.json / directory) with random weights and an example input."""
    config = config_or_path if not isinstance(config_or_path, (str, Path)) else load_hf_config(config_or_path)
    if hasattr(config, "use_cache"):
        config.use_cache = False
    cls = hf_model_class(config)
    torch.manual_seed(seed)
    model = cls._from_config(config) if hasattr(cls, "_from_config") else cls(config)
    x = example_inputs_for(config, model.main_input_name, seq=seq, batch=batch, seed=seed)
    return HFModel(model.eval(), x, model.main_input_name, cls.__name__)
