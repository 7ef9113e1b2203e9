"""MODEL specs -> (model, example input), and ``--weights`` files -> loaded state_dicts.

A spec is ``source:name``:

=======================  ==========================================================================
``torchvision:NAME``     ``torchvision.models.get_model(NAME, weights=None)`` (random init)
``timm:NAME``            ``timm.create_model(NAME, pretrained=False)`` (needs timm)
``models:NAME``          graphprune's bundled reference networks (``models.REGISTRY``)
``checkpoint:FILE``      a trained registry checkpoint (``graphprune.train.save_checkpoint``)
``hf:CONFIG``            a Hugging Face transformers model built from a local ``config.json`` (or its directory)
                         with random weights, no download (``graphprune.models_hf``); input from the config
``path/file.py:FACTORY``  EXECUTES ``file.py`` and calls ``FACTORY()``, which returns an ``nn.Module``
=======================  ==========================================================================

Every failure here is a :class:`CliError` naming the spec and what to do (with "did you mean" for names).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import torch

from .errors import CliError, did_you_mean, one_line

__all__ = ["load_model", "load_weights", "SOURCES"]

SOURCES = ("torchvision", "timm", "models", "checkpoint", "hf")
_FORMS = "torchvision:NAME, timm:NAME, models:NAME, checkpoint:FILE, hf:CONFIG or path/file.py:FACTORY"


def load_model(spec: str, input_shape: tuple[int, ...] | None = None, seed: int = 0, seq: int | None = None
               ) -> tuple[torch.nn.Module, torch.Tensor]:
    """Resolve a MODEL spec to (model in eval mode, example input of ``input_shape`` or the model's default).

    ``seq`` is the token count of an ``hf:`` text model's ``input_ids`` (``input_shape`` N,L sets it too).

    NOTE: the global RNG is seeded with ``seed`` before the model is built, so randomly initialised
    models (and so importance scores and plans) repeat from run to run.
    """
    kind, _, name = spec.partition(":")
    if not name:
        raise CliError(f"MODEL must look like source:name, got {spec!r}", f"use {_FORMS}")
    torch.manual_seed(seed)
    if kind == "hf":
        return _hugging_face(name, input_shape, seed, seq)
    if seq is not None:
        raise CliError(f"--seq is for hf: text models, not {spec}", "drop --seq (or use --input-shape)")
    if kind.endswith(".py"):
        model, default = _from_file(Path(kind), name), (1, 3, 224, 224)
    elif kind in _BUILDERS:
        model, default = _BUILDERS[kind](name)
    else:
        raise CliError(f"unknown model source {kind!r} in {spec!r}", f"{did_you_mean(kind, SOURCES)}use {_FORMS}")
    if not isinstance(model, torch.nn.Module):
        raise CliError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module",
                       "make the factory return the model")
    x = torch.randn(*(input_shape or default), generator=torch.Generator().manual_seed(seed))
    return model.eval(), x


def _torchvision(name: str):
    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        raise CliError(f"torchvision has no model {name!r}",
                       f"{did_you_mean(name, known, 'torchvision:')}list them with "
                       "python -c 'import torchvision; print(torchvision.models.list_models())'")
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    return model, (1, 3, 299, 299) if name == "inception_v3" else (1, 3, 224, 224)


def _timm(name: str):
    try:
        import timm
    except ImportError:
        raise CliError("timm:NAME needs the timm package, which is not installed", "pip install timm") from None
    if not timm.is_model(name):
        raise CliError(f"timm has no model {name!r}",
                       f"{did_you_mean(name, timm.list_models(), 'timm:')}list them with "
                       "python -c 'import timm; print(timm.list_models())'")
    model = timm.create_model(name, pretrained=False)
    return model, (1, *model.pretrained_cfg.get("input_size", (3, 224, 224)))


def _bundled(name: str):
    import models

    if name not in models.REGISTRY:
        raise CliError(f"no bundled model {name!r}",
                       f"{did_you_mean(name, models.REGISTRY, 'models:')}choose one of {sorted(models.REGISTRY)}")
    return models.build(name), models.INPUT_SHAPES.get(name, (1, 3, 32, 32))


def _checkpoint(file: str):
    import models
    from ..train import load_checkpoint

    path = Path(file)
    if not path.is_file():
        raise CliError(f"checkpoint file {file} does not exist", "check the path (checkpoints/*.pt holds the "
                       "bundled baselines)")
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:  # NOTE: any failure to read a user's file is about the file, not a bug
        raise CliError(f"{file} is not a graphprune checkpoint ({type(exc).__name__}: {one_line(exc, 160)})",
                       "pass a file written by graphprune.train.save_checkpoint, or use --weights for a plain "
                       "state_dict") from None
    if ckpt.model not in models.REGISTRY:
        raise CliError(f"checkpoint {file} names model {ckpt.model!r}, which is not bundled",
                       f"{did_you_mean(ckpt.model, models.REGISTRY)}bundled: {sorted(models.REGISTRY)}")
    try:
        model = ckpt.build()
    except (TypeError, RuntimeError) as exc:
        raise CliError(f"checkpoint {file} does not rebuild {ckpt.model}({ckpt.kwargs}): {one_line(exc, 200)}",
                       "the checkpoint's kwargs or weights do not fit the bundled factory; re-save it") from None
    side = 28 if "28x28" in str(ckpt.meta.get("input", "")) else 32
    return model, (1, ckpt.kwargs.get("in_channels", 3), side, side)


def _hugging_face(path: str, input_shape: tuple[int, ...] | None, seed: int, seq: int | None):
    """``hf:CONFIG``: the model and example input ``graphprune.models_hf.build_hf_model`` makes from the config."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise CliError("hf:CONFIG needs the transformers package, which is not installed",
                       "pip install transformers") from None
    from ..models_hf import DEFAULT_SEQ, HFConfigError, build_hf_model

    text_shape = input_shape is not None and len(input_shape) == 2
    try:
        built = build_hf_model(path, seq=input_shape[1] if text_shape else seq or DEFAULT_SEQ,
                               batch=input_shape[0] if input_shape else 1, seed=seed)
    except HFConfigError as exc:
        raise CliError(f"hf:{path}: {exc}", "pass a transformers config.json (e.g. saved by "
                       "config.save_pretrained(DIR)) whose 'architectures' names the class to build") from None
    x = built.example_input
    if input_shape is not None and tuple(x.shape) != tuple(input_shape):
        x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed)) if x.is_floating_point() \
            else torch.randint(0, built.model.config.vocab_size, input_shape, generator=torch.Generator().manual_seed(seed))
    return built.model, x


_BUILDERS: dict[str, Callable] = {"torchvision": _torchvision, "timm": _timm, "models": _bundled,
                                  "checkpoint": _checkpoint}


def _from_file(path: Path, factory: str) -> torch.nn.Module:
    """Execute ``path`` as a module and call ``factory()`` from it."""
    if not path.is_file():
        raise CliError(f"no such file: {path}", "MODEL path/file.py:FACTORY needs an existing file")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CliError(f"running {path} raised {type(exc).__name__}: {one_line(exc, 200)}",
                       "fix that file (rerun with --debug for the traceback)") from exc
    fn = getattr(module, factory, None)
    if not callable(fn):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise CliError(f"{path} has no function {factory!r}",
                       f"{did_you_mean(factory, names, f'{path}:')}functions there: {sorted(names)[:8]}")
    try:
        return fn()
    except Exception as exc:
        raise CliError(f"{path}:{factory}() raised {type(exc).__name__}: {one_line(exc, 200)}",
                       "the factory must build the model without arguments (rerun with --debug)") from exc


def load_weights(model: torch.nn.Module, file: str, trust: bool = False) -> None:
    """Load the state_dict in ``file`` into ``model``; ``trust`` allows a full unpickle (runs code in the file)."""
    path = Path(file)
    if not path.is_file():
        raise CliError(f"weights file {file} does not exist", "check the --weights path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        fix = ("if you made this file and trust it, add --trust-file (it unpickles arbitrary code)" if not trust
               else "pass a file written by torch.save(model.state_dict(), FILE)")
        raise CliError(f"cannot load {file} as weights ({type(exc).__name__}: {one_line(exc, 160)})", fix) from None
    state = _state_dict_of(payload)
    if state is None:
        raise CliError(f"{file} holds a {type(payload).__name__}, not a state_dict",
                       "save it with torch.save(model.state_dict(), FILE)")
    _check_keys(model, state, file)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        mismatch = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), one_line(exc, 200))
        raise CliError(f"{file} does not fit the model: {mismatch}",
                       "load weights saved from this architecture (same widths)") from None


def _state_dict_of(payload) -> dict | None:
    """The state_dict in a loaded payload: a plain dict, a graphprune checkpoint, or (trusted) a module."""
    if isinstance(payload, torch.nn.Module):
        return payload.state_dict()
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload
    return None


def _check_keys(model: torch.nn.Module, state: dict, file: str) -> None:
    expected, given = set(model.state_dict()), set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:3])}"
                     f"{', …' if len(unexpected) > 3 else ''})")
    raise CliError(f"{file} does not match the model's state_dict: {'; '.join(parts)}",
                   "load weights saved from this architecture (torch.save(model.state_dict(), FILE))")
