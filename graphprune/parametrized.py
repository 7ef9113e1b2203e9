"""Parametrized tensors (``torch.nn.utils.parametrize``) are baked into plain tensors on graphprune's private copies.

A parametrization computes a tensor from its originals (``weight = f(original)``: weight norm, spectral norm,
orthogonal, any user ``register_parametrization``).  Slicing the originals does not slice the result in general:
``f(original[keep]) != f(original)[keep]`` whenever ``f`` mixes rows or columns (a norm over the whole matrix, the
largest singular value, an orthogonalisation, weight norm across input channels).  Pruning the originals would
therefore return a model that is *not* the original with the pruned channels zeroed, and the masked reference
(which zeroes the same originals) could not tell.  So:

1. every private copy (``trace.private_copy``: what the front ends trace and the rewrite slices) holds each
   parametrized tensor as a plain parameter (or buffer) with the value the user's model computes in eval mode
   (no power iteration), its ``requires_grad`` the originals'; the copy's module gets back its own class;
2. the user's model is never touched: parametrize gives each module its own generated class, which the copy
   shares, so only the copy's ``__class__`` attribute and dicts are changed, never that class;
3. ``warn_baked`` tells the user which tensors the pruned model holds as plain values (re-apply the
   parametrization to fine-tune with it).

The old hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm`` are refused up front (``model_checks``).
"""
from __future__ import annotations

import warnings

import torch
from torch.nn.utils import parametrize

__all__ = ["parametrized_tensors", "bake_parametrizations", "warn_baked"]


def parametrized_tensors(model: torch.nn.Module) -> list[str]:
    """``"<module>.<tensor> (<parametrization classes>)"`` for every parametrized tensor of ``model``."""
    found = []
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for tensor, chain in module.parametrizations.items():
                kinds = "+".join(type(p).__name__ for p in chain)
                found.append(f"{name + '.' if name else ''}{tensor} ({kinds})")
    return found


def _computed(module: torch.nn.Module, tensor: str, chain: torch.nn.Module) -> torch.Tensor:
    """The value ``module.<tensor>`` has in eval mode (spectral norm: no power-iteration step), detached."""
    modes = [(m, m.training) for m in chain.modules()]
    chain.eval()
    try:
        with torch.no_grad():
            return getattr(module, tensor).detach().clone()
    finally:
        for m, mode in modes:
            m.training = mode


def _drop_compat_hooks(module: torch.nn.Module) -> None:
    """``parametrizations.weight_norm`` also registers a load_state_dict pre-hook that renames old ``weight_g`` /
    ``weight_v`` keys into parametrization keys: meaningless on a plain weight, and a local function that stops
    the pruned model from pickling (``save_pruned``).  Removed from the copy's own dict."""
    for key, hook in list(module._load_state_dict_pre_hooks.items()):
        if "_weight_norm_compat_hook" in getattr(getattr(hook, "hook", hook), "__qualname__", ""):
            del module._load_state_dict_pre_hooks[key]


def bake_parametrizations(model: torch.nn.Module) -> None:
    """Replace every parametrized tensor of ``model`` (a private copy) by a plain one holding its value (rule 1)."""
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        baked: dict[str, torch.Tensor] = {}
        for tensor, chain in module.parametrizations.items():
            originals = list(chain.parameters(recurse=False)) + list(chain.buffers(recurse=False))
            value = _computed(module, tensor, chain)
            if any(isinstance(t, torch.nn.Parameter) for t in originals):
                value = torch.nn.Parameter(value, requires_grad=any(t.requires_grad for t in originals))
            baked[tensor] = value
        del module._modules["parametrizations"]
        _drop_compat_hooks(module)
        # NOTE: the generated class (shared with the user's module) is left alone; this instance gets its base
        module.__class__ = module.__class__.__bases__[0]
        params = {k: v for k, v in baked.items() if isinstance(v, torch.nn.Parameter)}
        buffers = {k: v for k, v in baked.items() if not isinstance(v, torch.nn.Parameter)}
        module._parameters = {**params, **module._parameters}
        module._buffers = {**buffers, **module._buffers}


def warn_baked(model: torch.nn.Module) -> None:
    """One warning naming the parametrized tensors that the pruned model holds as plain values (rule 3)."""
    found = parametrized_tensors(model)
    if found:
        warnings.warn(
            f"graphprune: parametrized tensors are pruned as the values they compute (eval mode) and the pruned "
            f"model holds them as plain tensors, without the parametrization: {', '.join(found)}. Slicing a "
            "parametrization's originals would not slice its result (a norm or orthogonalisation mixes channels); "
            "re-register the parametrization on the pruned model if you fine-tune with it.", stacklevel=3)
