"""Stage 1 — trace: turn an ``nn.Module`` into an fx graph whose every value carries its shape.

The tracer is ``torch.fx.Tracer`` with two additions a pruning compiler needs:

1. *Leaf modules* supplied by the user (types or qualified names) are kept as single ``call_module``
   nodes, so code fx cannot trace can be fenced off.  Their channels are then frozen unless an op rule
   knows the module type.
2. When tracing fails, the error names the innermost module being traced, its class, the original fx
   message, and the two ways through (``leaf_modules=`` / ``concrete_args=``).

Shapes come from ``torch.fx.passes.shape_prop.ShapeProp`` run once on ``example_inputs`` in eval mode,
so tracing never updates BatchNorm running statistics.

The user's model is never written (rules, in order of the stages):

* tracing runs on a private structure copy whose *buffers are clones* (a ``forward`` that does
  ``self.calls += 1`` while being traced bumps the clone); parameters are shared, read only;
* shape propagation runs on meta tensors, and its real-tensor fallback on clones of every tensor, so an
  in-place op in ``forward`` (``buf.add_(...)``) writes nothing that outlives the run;
* ``self.training`` reads and hooks are handled in ``graphprune.trace_state`` (never silently baked in).

Thread safety: fx's ``Tracer`` patches ``torch.nn.Module.__call__`` / ``__getattr__`` process-wide while it
traces.  ``_TRACE_LOCK`` serialises every fx trace of this module, and the tracer passes calls made by
*other* threads during a trace straight through to the original methods, so inference running elsewhere
is unaffected.  Nothing here swaps process-wide state such as ``sys.stderr``.
"""
from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
import torch.fx as fx
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import ShapeProp, _extract_tensor_metadata

from .parametrized import bake_parametrizations
from .trace_state import HookRecord, collect_hooks, hooked_module_names, link_training, strip_hooks

__all__ = ["structure_copy", "private_copy", "TraceError", "NodeRunError", "TracedModel", "trace", "normalize_inputs",
           "propagate_shapes"]


class TraceError(RuntimeError):
    """Raised when a model cannot be symbolically traced; the message says where and what to do."""


class NodeRunError(RuntimeError):
    """A node of a graph failed while propagating shapes; ``node`` names it."""

    def __init__(self, node: str, message: str):
        super().__init__(f"node '{node}': {message}")
        self.node = node


# Modules whose output has the input's shape, dtype and layout: on meta tensors their kernels (decomposed
# batch norm in particular) cost far more than the answer, which is known.
_SAME_SHAPE = (torch.nn.modules.batchnorm._NormBase, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU,
               torch.nn.GELU, torch.nn.Hardswish, torch.nn.Hardsigmoid, torch.nn.Sigmoid, torch.nn.Dropout,
               torch.nn.Identity)


class _NamedShapeProp(ShapeProp):
    """ShapeProp that says which node failed (as ``NodeRunError``); ``shortcut`` skips same-shape modules."""

    def __init__(self, gm: fx.GraphModule, shortcut: bool = False, **kwargs):
        super().__init__(gm, **kwargs)
        self.shortcut = shortcut

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if self.shortcut and isinstance(module, _SAME_SHAPE) and args and isinstance(args[0], torch.Tensor) \
                and not kwargs:
            return torch.empty_like(args[0])
        return super().call_module(target, args, kwargs)

    def run_node(self, n: fx.Node):
        """ShapeProp's bookkeeping without its ``traceback.print_exc()``: failures become ``NodeRunError``.

        NOTE: overriding (not redirecting ``sys.stderr``, which is process-wide) keeps other threads' output.
        """
        try:
            result = fx.Interpreter.run_node(self, n)
        except NodeRunError:
            raise
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise NodeRunError(n.name, f"{type(cause).__name__}: {str(cause).splitlines()[0][:300]}") from exc
        found_tensor = False

        def extract(obj):
            nonlocal found_tensor
            if isinstance(obj, torch.Tensor):
                found_tensor = True
                return _extract_tensor_metadata(obj)
            return obj

        meta = map_aggregate(result, extract)
        if found_tensor:
            n.meta["tensor_meta"] = meta
        n.meta["type"] = type(result)
        return result


@dataclass
class TracedModel:
    """A private copy of the user's model as an fx ``GraphModule`` with shapes on every node.

    Attributes:
        gm: the traced graph module (shares the user's parameters read only; its buffers are clones).
        example_inputs: the positional inputs used for shape propagation.
        was_training: the user's ``model.training`` flag.
        shapes: value name -> shape, for every tensor value (node outputs; ``name#k`` for tuple items).
        source: an untouched private copy of the user's module tree (buffers cloned, hooks stripped, never
            run): the names, values and ``training`` flags the pruned model carries over.
        hooks: the user's forward/backward hooks (see ``graphprune.trace_state``).
        keep_hooks: whether the rewrite re-registers ``hooks`` on the pruned model.
        front_end: how the graph was captured: ``"fx"`` (symbolic tracing, this module), ``"export"``
            (``torch.export``) or ``"record"`` (running the model, ``graphprune.capture``).
        frozen_nodes: node name -> reason: every tensor those nodes touch is frozen by the dependency graph
            (the record front end's data-dependent ops).
    """

    gm: fx.GraphModule
    example_inputs: tuple
    was_training: bool
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    counted_macs: float | None = None
    opaque_modules: list[str] = field(default_factory=list)  # made leaves by leaf_modules="auto"
    source: torch.nn.Module | None = None
    hooks: list[HookRecord] = field(default_factory=list)
    keep_hooks: bool = False
    front_end: str = "fx"
    attention: str = "auto"  # what a unit of multi-head attention is (depgraph/heads.py); set by prune
    grouped: str = "auto"  # what a unit of a grouped conv is (depgraph/conv_groups.py); set by prune
    frozen_nodes: dict[str, str] = field(default_factory=dict)  # node -> why its tensors are frozen (record)


# NOTE: fx's Tracer patches torch.nn.Module.__call__/__getattr__ for the whole process while it traces; two
# overlapping traces restore each other's patches in the wrong order.  Every fx trace here holds this lock.
_TRACE_LOCK = threading.RLock()


class _GraphpruneTracer(fx.Tracer):
    """fx tracer that honours user leaf modules and remembers which module it is inside."""

    def __init__(self, leaf_types: tuple[type, ...] = (), leaf_names: frozenset[str] = frozenset()):
        super().__init__()
        self._leaf_types = leaf_types
        self._leaf_names = leaf_names
        self.gp_module_stack: list[tuple[str, str]] = []
        self.failed_in: tuple[str, str] | None = None
        self._thread = threading.get_ident()  # the tracing thread; every other thread passes through

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        if qualname in self._leaf_names or (self._leaf_types and isinstance(m, self._leaf_types)):
            return True
        return super().is_leaf_module(m, qualname)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if threading.get_ident() != self._thread:  # another thread's module, read during our trace
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m, forward, args, kwargs):
        if threading.get_ident() != self._thread:  # another thread's inference: run it for real
            return forward(*args, **kwargs)
        qualname = self.path_of_module(m)
        self.gp_module_stack.append((qualname, type(m).__name__))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # innermost module wins
                self.failed_in = self.gp_module_stack[-1]
            raise
        finally:
            self.gp_module_stack.pop()


def structure_copy(module: torch.nn.Module) -> torch.nn.Module:
    """Deep-copy the module tree but share its parameter and buffer tensors (no weight memory copied).

    NOTE: the copy may be rewired and its attributes changed freely; its tensors must only be *replaced*,
    never modified in place, since they still belong to the original.
    """
    memo = {id(t): t for t in module.parameters(recurse=True)}
    memo.update({id(t): t for t in module.buffers(recurse=True)})
    return copy.deepcopy(module, memo)


def private_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A structure copy whose buffers are clones, which has no hooks and whose parametrized tensors are plain
    ones holding their values (``graphprune.parametrized``): safe to trace, run and slice.

    Parameters stay shared (read only: tracing turns them into graph nodes and nothing here runs them
    outside ``_on_copies``); buffers are cloned because fx runs Python on them eagerly while tracing.
    """
    memo: dict[int, Any] = {id(t): t for t in module.parameters(recurse=True)}
    with torch.no_grad():
        for b in module.buffers(recurse=True):
            if id(b) not in memo:
                memo[id(b)] = b.detach().clone().requires_grad_(b.requires_grad)
    private = copy.deepcopy(module, memo)
    strip_hooks(private)
    bake_parametrizations(private)
    return private


def normalize_inputs(example_inputs: Any) -> tuple:
    """Accept a tensor, a tuple/list of tensors; return a tuple."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)) and example_inputs:
        return tuple(example_inputs)
    raise TypeError("example_inputs must be a tensor or a non-empty tuple of tensors, "
                    f"got {type(example_inputs).__name__}")


AUTO_LEAVES = "auto"  # in leaf_modules: keep every module fx cannot trace opaque, found by retrying
MAX_AUTO_LEAVES = 64


def _split_leaves(leaf_modules: Iterable | str) -> tuple[tuple[type, ...], frozenset[str], bool]:
    if isinstance(leaf_modules, str):
        leaf_modules = [leaf_modules]
    types, names, auto = [], [], False
    for leaf in leaf_modules or ():
        if isinstance(leaf, str) and leaf == AUTO_LEAVES:
            auto = True
        else:
            (types if isinstance(leaf, type) else names).append(leaf)
    return tuple(types), frozenset(str(n) for n in names), auto


def _trace_graph(model: torch.nn.Module, leaf_modules, concrete_args,
                 extra_leaves: frozenset[str] = frozenset()) -> tuple[fx.GraphModule, list[str]]:
    """fx-trace ``model`` (in eval mode, holding ``_TRACE_LOCK``); with ``"auto"`` among the leaves, each
    module that fails is made a leaf and the trace retried (innermost failing module first, so as little as
    possible becomes opaque).  Then ``link_training`` makes ``self.training`` reads dynamic."""
    leaf_types, leaf_names, auto = _split_leaves(leaf_modules)
    leaf_names |= extra_leaves
    with _TRACE_LOCK:
        graph, opaque = _trace_with_retries(model, leaf_types, leaf_names, auto, concrete_args)
        leaves = leaf_names | frozenset(opaque)
        link_training(model, graph, lambda: _GraphpruneTracer(leaf_types, leaves).trace(model, concrete_args))
    if opaque:
        warnings.warn(f"graphprune: {len(opaque)} module(s) fx could not trace are kept opaque, their channels "
                      f"frozen: {', '.join(opaque)}", stacklevel=3)
    return fx.GraphModule(model, graph, type(model).__name__), opaque


def _trace_with_retries(model, leaf_types, leaf_names, auto, concrete_args) -> tuple[fx.Graph, list[str]]:
    opaque: list[str] = []
    while True:
        tracer = _GraphpruneTracer(leaf_types, leaf_names | frozenset(opaque))
        try:
            graph = tracer.trace(model, concrete_args=concrete_args)
            break
        except Exception as exc:  # fx raises many types; all mean "cannot trace"
            where = tracer.failed_in or ("", type(model).__name__)
            if auto and where[0] and where[0] not in opaque and len(opaque) < MAX_AUTO_LEAVES:
                opaque.append(where[0])
                continue
            raise TraceError(
                f"torch.fx could not trace module '{where[0] or '<root>'}' ({where[1]}): {type(exc).__name__}: "
                f"{exc}\nWays through: pass leaf_modules=[{where[1]}] (or the name '{where[0]}') to keep it as "
                "one opaque node (its channels are then frozen), leaf_modules='auto' to do that for every module "
                "fx cannot trace, or concrete_args={...} to fix the Python value that drives the control flow."
                + (f" Already opaque: {opaque}." if opaque else "")
            ) from exc
    return graph, opaque


def _record_shapes(gm: fx.GraphModule) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if meta is None:
            continue
        if hasattr(meta, "shape"):
            shapes[node.name] = tuple(int(s) for s in meta.shape)
        elif isinstance(meta, (tuple, list)):
            for k, item in enumerate(meta):
                if hasattr(item, "shape"):
                    shapes[f"{node.name}#{k}"] = tuple(int(s) for s in item.shape)
    return shapes


@contextlib.contextmanager
def _on_copies(gm: fx.GraphModule, device: str | None):
    """Temporarily swap every parameter and buffer of ``gm`` for a copy: data-less on ``"meta"``, else a clone.

    NOTE: ``gm`` is always a private structure copy, so swapping entries of its modules' dicts touches
    nothing the user owns; in-place ops of ``forward`` then write the copies, never the shared tensors
    (whose ``_version`` stays put); the real tensors are put back even if propagation fails.
    """
    saved, copies = [], {}
    for module in gm.modules():
        for store in (module._parameters, module._buffers):
            for name, t in list(store.items()):
                if t is not None:
                    saved.append((store, name, t))
                    if id(t) not in copies:  # tied tensors stay tied
                        c = t.detach().to(device) if device else t.detach().clone()
                        copies[id(t)] = torch.nn.Parameter(c, t.requires_grad) \
                            if isinstance(t, torch.nn.Parameter) else c
                    store[name] = copies[id(t)]
    try:
        yield gm
    finally:
        for store, name, t in saved:
            store[name] = t


def _shape_prop(gm: fx.GraphModule, example_inputs: Sequence, fake: bool) -> dict[str, tuple[int, ...]]:
    if not fake:
        inputs = [x.clone() if isinstance(x, torch.Tensor) else x for x in example_inputs]
        with _on_copies(gm, None):
            _NamedShapeProp(gm).propagate(*inputs)
        return _record_shapes(gm)
    # NOTE: meta tensors carry shapes without data or arithmetic: shape propagation costs no FLOPs and
    # no copy of the weights.  Ops without a meta kernel fall back to the real run.
    inputs = [x.to("meta") if isinstance(x, torch.Tensor) else x for x in example_inputs]
    with _on_copies(gm, "meta"):
        _NamedShapeProp(gm, shortcut=True).propagate(*inputs)
    return _record_shapes(gm)


def propagate_shapes(gm: fx.GraphModule, example_inputs: Sequence,
                     macs_out: list | None = None) -> dict[str, tuple[int, ...]]:
    """Run ShapeProp in eval mode under no_grad; return value name -> shape.

    Tries fake tensors first (no arithmetic); falls back to a real forward for ops fake mode lacks.
    If ``macs_out`` is a list, the MACs torch's FLOP counter saw during propagation are appended to it.
    """
    from .flops import counting_macs

    modes = [(m, m.training) for m in gm.modules()]  # per module: some may be frozen in eval
    gm.eval()
    counter_ctx = counting_macs() if macs_out is not None else contextlib.nullcontext()
    try:
        with torch.no_grad():
            for fake in (True, False):
                try:
                    with counter_ctx as counter:
                        shapes = _shape_prop(gm, example_inputs, fake=fake)
                    break
                except Exception:
                    if not fake:
                        raise
                    counter_ctx = counting_macs() if macs_out is not None else contextlib.nullcontext()
    finally:
        for m, mode in modes:
            m.training = mode
    if macs_out is not None:
        macs_out.append(counter.get_total_flops() / 2)
    return shapes


def trace(model: torch.nn.Module, example_inputs: Any, *, leaf_modules: Iterable = (),
          concrete_args: dict | None = None, keep_hooks: bool = False) -> TracedModel:
    """Trace a private copy of ``model`` (the user's module is never touched) and propagate shapes.

    The copy shares the user's parameters (read only) and clones its buffers; every rewrite replaces or
    clones them.  Thread safe: fx tracing is serialised by a module-level lock (see the module docstring).

    Args:
        model: any ``nn.Module``; an existing ``fx.GraphModule`` is copied, not re-traced.
        example_inputs: a tensor or tuple of tensors with the shapes the model will see.
        leaf_modules: module types or qualified names to keep opaque; ``"auto"`` (alone or in the list)
            also keeps opaque every module that fx cannot trace (listed in a warning and in
            ``TracedModel.opaque_modules``).
        concrete_args: forwarded to ``fx.Tracer.trace`` to specialise Python-valued arguments.
        keep_hooks: the rewrite re-registers the user's hooks on the pruned model; modules with hooks are
            then traced as leaves so that their hooks can fire.  Hooks are never part of the graph.
    """
    inputs = normalize_inputs(example_inputs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    hooks = collect_hooks(model)
    source = private_copy(model)
    private = private_copy(model)
    was_training = private.training
    private.eval()  # NOTE: traced as in inference (BN stats stay put); training reads are linked after
    opaque: list[str] = []
    if isinstance(private, fx.GraphModule) and not leaf_modules and concrete_args is None:
        gm = private
    else:
        extra = hooked_module_names(hooks) if keep_hooks else frozenset()
        gm, opaque = _trace_graph(private, leaf_modules, concrete_args, extra)
    macs: list[float] = []
    try:
        shapes = propagate_shapes(gm, inputs, macs)
    except Exception as exc:
        raise TraceError(f"the traced graph failed to run on example_inputs: {type(exc).__name__}: {exc}") from exc
    return TracedModel(gm=gm, example_inputs=inputs, was_training=was_training, shapes=shapes,
                       counted_macs=macs[0] if macs else None, opaque_modules=opaque, source=source,
                       hooks=hooks, keep_hooks=keep_hooks)
