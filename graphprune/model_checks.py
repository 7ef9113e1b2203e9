"""Checks on the model and plan handed to ``prune`` and ``apply_plan``, run before any tracing.

A model whose weights have no data (the ``meta`` device: built with ``torch.device("meta")`` or
``init_empty_weights``) cannot be sliced, and a model spread over several devices cannot be rewritten as one
(``ValueError``); ``apply_plan`` takes a ``Plan`` (``TypeError`` with a hint for a path).  Some kinds of module
are refused by name with the way out, because they would otherwise fail deep in a copy or trace (or worse,
be pruned from a stale weight): TorchScript modules (compiled code, nothing to trace), lazy modules whose
parameters have no shape yet, and the old hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm``
and ``torch.nn.utils.prune`` masks (a pre-hook recomputes ``weight`` on every call; the traced graph would read
the stale attribute, and a copy fails on it).  Kept apart from
``options.py`` (which reads the table of strategies) so that ``apply_plan`` sits below every stage.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from .plan import Plan

__all__ = ["check_model_tensors", "check_module_kinds", "check_apply_plan_args"]


def check_apply_plan_args(model: Any, plan: Any) -> None:
    """``apply_plan`` needs a module with real weights on one device (rule 5) and a ``Plan``."""
    check_model_tensors(model, "apply_plan")
    if not isinstance(plan, Plan):
        hint = ": load it first with graphprune.Plan.load(path)" if isinstance(plan, (str, bytes)) or \
            hasattr(plan, "__fspath__") else ""
        raise TypeError(f"apply_plan: plan must be a graphprune.Plan, got {type(plan).__name__}{hint}")


def check_model_tensors(model: Any, entry: str = "prune") -> None:
    """Refuse a non-module, weights without data (meta device) and weights spread over several devices.

    Args:
        model: what the user passed as the model.
        entry: the public function being called, for the message.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{entry}: model must be a torch.nn.Module, got {type(model).__name__}")
    check_module_kinds(model, entry)
    first_on: dict[str, str] = {}  # device -> first tensor found there
    for name, t in _named_tensors(model):
        if t.device.type == "meta":
            raise ValueError(
                f"{entry}: model tensor {name!r} is on the meta device (it has a shape but no data), so its "
                "channels cannot be ranked or sliced; materialise the weights first, e.g. "
                "model.to_empty(device='cpu') then model.load_state_dict(state_dict)")
        first_on.setdefault(str(t.device), name)
    if len(first_on) > 1:
        where = ", ".join(f"{name!r} on {device}" for device, name in first_on.items())
        raise ValueError(f"{entry}: model tensors are on several devices ({where}); move the model to one "
                         "device first, e.g. model.to('cpu')")


def check_module_kinds(model: torch.nn.Module, entry: str) -> None:
    """Refuse TorchScript modules, uninitialised lazy tensors, hook-based weight/spectral norm and
    ``torch.nn.utils.prune`` masks, naming the module and the way out (module docstring)."""
    from torch.nn.utils.prune import BasePruningMethod
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for name, module in model.named_modules():
        where = f"module {name!r} ({type(module).__name__})" if name else f"the model ({type(module).__name__})"
        if isinstance(module, torch.jit.ScriptModule):
            raise TypeError(
                f"{entry}: {where} is a TorchScript module (made by torch.jit.script or torch.jit.trace): its code is "
                "compiled, so there is no Python forward to trace or rewrite; pass the nn.Module it was made from "
                "(prune first, then script the pruned model)")
        lazy = [p for p, t in list(module._parameters.items()) + list(module._buffers.items())
                if t is not None and torch.nn.parameter.is_lazy(t)]
        if lazy:
            raise ValueError(
                f"{entry}: {where} has uninitialised lazy tensors {lazy} (their shapes are set by the first call); "
                "run the model once on an example input first, e.g. model(example_inputs)")
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, (WeightNorm, SpectralNorm)):
                kind = "weight_norm" if isinstance(hook, WeightNorm) else "spectral_norm"
                raise ValueError(
                    f"{entry}: {where} uses torch.nn.utils.{kind} on {hook.name!r}, the old hook-based API (a forward "
                    f"pre-hook recomputes {hook.name!r} on every call, which a copy or trace does not see); "
                    f"use torch.nn.utils.parametrizations.{kind} instead (pruned as the weight it computes), or bake "
                    f"it first with torch.nn.utils.remove_{kind}(module)")
            if isinstance(hook, BasePruningMethod):
                tensor = getattr(hook, "_tensor_name", "weight")
                raise ValueError(
                    f"{entry}: {where} has a torch.nn.utils.prune mask on {tensor!r} (a forward pre-hook recomputes "
                    f"{tensor!r} = {tensor}_orig * {tensor}_mask on every call, which a copy or trace does not see); "
                    f"make it permanent first with torch.nn.utils.prune.remove(module, {tensor!r}) (the masked "
                    "zeros stay in the weight)")


def _named_tensors(model: torch.nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from ((name, b) for name, b in model.named_buffers() if b is not None)

