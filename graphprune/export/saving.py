"""Saving pruned models so that loading them runs no code from the file unless you say so.

``save_pruned(model, path, plan)`` writes ONE file that ``torch.load(path, weights_only=True)`` can read::

    {"format": "graphprune.pruned/2", "torch": "2.x", "state_dict": {...}, "plan": "<plan JSON>" or None,
     "module_pickle": b"..."}   # raw bytes of torch.save(model): code, but inert until unpickled

and the plan again beside it as ``<path>.plan.json`` for people who read plans.  Both files are written to
temporary files first and renamed only when both are complete, so a failed save leaves the old pair intact.

``load_pruned`` reads them two ways:

* ``load_pruned(path, model=fresh_original, example_inputs=x)`` (safe): re-applies the saved plan to a
  fresh instance of the original architecture (``graphprune.apply_plan``) and loads the saved weights.
  Only tensors and plain data are read; no code from the file runs.  A model ``prune`` returned as the
  user's own class (``output="module"``) is saved with its int attributes (``"int_attributes"``: plain
  data) and rebuilt as that class by ``graphprune.rebuild_like`` instead, without tracing.
* ``load_pruned(path, trusted=True)``: unpickles the saved GraphModule, which runs code stored in the
  file.  Only for files you wrote yourself.  Also reads the old format (a plain pickled GraphModule).

Without either, ``load_pruned`` refuses with :class:`UntrustedFileError` and says how to opt in.
"""
from __future__ import annotations

import io
import pickle
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..files import atomic_path
from ..plan import Plan, PlanError

__all__ = ["save_pruned", "load_pruned", "read_pruned_payload", "plan_path", "refusal_reason",
           "UntrustedFileError", "PRUNED_FORMAT"]

PRUNED_FORMAT = "graphprune.pruned/2"
UNPICKLE_RISK = ("unpickling runs code stored in the file (a crafted file can do anything your user "
                 "account can), so only do it for files you wrote yourself or got from someone you trust")


class UntrustedFileError(pickle.UnpicklingError):
    """A file that only a full unpickle can load, refused because the caller did not say it is trusted."""


def refusal_reason(error: BaseException) -> str:
    """The line of a ``torch.load(weights_only=True)`` error that says what it refused (its first line is generic)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines if line.startswith("WeightsUnpickler error")]
    return (specific or lines or [type(error).__name__])[0][:300]


def plan_path(path: str | Path) -> Path:
    """Where ``save_pruned`` puts the human-readable plan beside ``path``: ``<path>.plan.json``."""
    return Path(f"{path}.plan.json")


def _module_bytes(model: nn.Module) -> bytes:
    """``torch.save(model)`` into memory, so an unpicklable module fails before any file is touched."""
    buffer = io.BytesIO()
    try:
        torch.save(model, buffer)
    except Exception as error:
        raise pickle.PicklingError(
            f"cannot pickle the pruned module ({type(error).__name__}: {error}); nothing was written. "
            "Remove unpicklable attributes such as lambda hooks (module.register_forward_hook(lambda ...)) "
            "before saving") from error
    return buffer.getvalue()


def save_pruned(model: fx.GraphModule, path: str | Path, plan: Plan | None = None) -> Path:
    """Write ``model`` (and ``plan``) as described in the module docstring; returns ``path``.

    Without a plan, a stale ``<path>.plan.json`` from an earlier save is removed, since it would no longer
    describe the model at ``path``.  Nothing is written if the module cannot be pickled.
    """
    path = Path(path)
    plan_json = plan.to_json() if plan is not None else None
    payload = {"format": PRUNED_FORMAT, "torch": str(torch.__version__),  # NOTE: TorchVersion is not weights_only
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "plan": plan_json, "module_pickle": _module_bytes(model)}
    if not isinstance(model, fx.GraphModule):  # the user's own class, rewritten in place
        payload["int_attributes"] = _int_attributes(model)
    # NOTE: both temporaries are complete before either rename (ExitStack renames the plan, then the model);
    # an error anywhere before that removes both temporaries and leaves the old files as they were.
    with ExitStack() as renames:
        model_tmp = renames.enter_context(atomic_path(path))
        plan_tmp = renames.enter_context(atomic_path(plan_path(path))) if plan_json is not None else None
        torch.save(payload, model_tmp)
        if plan_tmp is not None:
            plan_tmp.write_text(plan_json)
    if plan_json is None:
        plan_path(path).unlink(missing_ok=True)
    return path


def _int_attributes(model: nn.Module) -> dict[str, int]:
    """Every public int attribute by qualified name: the sizes a state_dict does not state (``hidden_dim``)."""
    return {f"{name}.{attr}" if name else attr: value for name, module in model.named_modules()
            for attr, value in vars(module).items() if not attr.startswith("_") and type(value) is int}


def read_pruned_payload(path: str | Path) -> dict[str, Any]:
    """The ``graphprune.pruned/2`` dict in ``path``, read with ``weights_only=True`` (no code runs).

    Raises:
        UntrustedFileError: the file is not in that format (an old-format pickle, or anything else).
    """
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        raise UntrustedFileError(
            f"{path}: not a weights-only {PRUNED_FORMAT} file (old-format pickle, or not graphprune's): "
            f"{refusal_reason(error)}. load_pruned(path, trusted=True) unpickles it; {UNPICKLE_RISK}") from None
    if not isinstance(payload, dict) or payload.get("format") != PRUNED_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UntrustedFileError(f"{path}: not a {PRUNED_FORMAT} file (found {found!r})")
    return payload


def load_pruned(path: str | Path, trusted: bool = False, *, model: nn.Module | None = None,
                example_inputs: Any = None, **trace_kw: Any) -> nn.Module:
    """Load a model written by :func:`save_pruned`.

    Args:
        path: the file ``save_pruned`` wrote.
        trusted: unpickle the saved GraphModule.  This runs code stored in the file: a crafted file can
            do anything your user account can.  Pass it only for files you wrote yourself.
        model: safe path instead: a fresh instance of the original (unpruned) architecture.  The saved
            plan is re-applied to it and the saved weights loaded; nothing from the file is executed.
        example_inputs: the example inputs the model was pruned with (needed with ``model``, except for a
            model saved as the user's own class).
        trace_kw: tracer options for ``graphprune.apply_plan`` (``leaf_modules``, ``concrete_args``).

    Raises:
        UntrustedFileError: neither ``trusted=True`` nor ``model=`` was given, or ``model=`` was given
            and the file is not a ``graphprune.pruned/2`` file.
        PlanError: the file has no plan, or it does not fit ``model``.
    """
    if model is not None:
        return _rebuild(path, model, example_inputs, trace_kw)
    if not trusted:
        raise UntrustedFileError(
            f"{path}: load_pruned does not unpickle files by default, because {UNPICKLE_RISK}. Either "
            f"pass trusted=True if you wrote this file, or rebuild it safely (no code from the file runs) "
            f"with load_pruned(path, model=<fresh instance of the original architecture>, example_inputs=x)")
    return _unpickle_trusted(path)


def _rebuild(path: str | Path, model: nn.Module, example_inputs: Any, trace_kw: dict) -> nn.Module:
    """Re-apply the saved plan to ``model`` and load the saved weights (weights-only read)."""
    from ..apply import apply_plan  # NOTE: lazy: it imports the tracer and the rewrite passes

    payload = read_pruned_payload(path)
    if "int_attributes" in payload:
        return _rebuild_in_place(path, model, payload)
    if example_inputs is None:
        raise ValueError("load_pruned(model=...) needs example_inputs=..., the inputs the model was pruned with")
    if payload.get("plan") is None:
        raise PlanError(f"{path} was saved without a plan, so it cannot be rebuilt from the original "
                        f"architecture; load_pruned(path, trusted=True) unpickles it ({UNPICKLE_RISK})")
    pruned = apply_plan(model, Plan.from_json(payload["plan"]), example_inputs, **trace_kw)
    try:
        pruned.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise PlanError(f"{path}: the saved weights do not fit the plan applied to this model (a different "
                        f"architecture, or a model changed beyond its plan?): {error}") from None
    return pruned


def _rebuild_in_place(path: str | Path, model: nn.Module, payload: dict) -> nn.Module:
    """``model``'s class at the saved widths (``rebuild_like``), saved int attributes and weights loaded."""
    from ..passes.resize_modules import rebuild_like

    fresh = _int_attributes(model)
    attributes = {k: v for k, v in payload["int_attributes"].items() if k in fresh and fresh[k] != v}
    try:
        return rebuild_like(model, payload["state_dict"], attributes=attributes)
    except (KeyError, RuntimeError) as error:
        raise PlanError(f"{path}: the saved weights do not fit this model (a different architecture?): "
                        f"{error}") from None


def _unpickle_trusted(path: str | Path) -> nn.Module:
    """Full unpickle (runs the file's code) of a pruned/2 file or an old-format pickled module."""
    loaded = torch.load(Path(path), map_location="cpu", weights_only=False)
    if isinstance(loaded, dict) and loaded.get("format") == PRUNED_FORMAT:
        loaded = torch.load(io.BytesIO(loaded["module_pickle"]), map_location="cpu", weights_only=False)
    if not isinstance(loaded, nn.Module):
        raise TypeError(f"{path} holds a {type(loaded).__name__}, not a pruned module")
    return loaded
