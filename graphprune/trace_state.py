"""Module state the fx graph does not hold: ``self.training`` reads and user hooks.

fx records what ``forward`` computes, not the Python state it reads.  Two pieces of that state change
what a model computes, so the tracer handles them explicitly instead of silently baking one value in:

1. **Training reads.**  ``F.dropout(x, p, self.training)`` is traced with the *value* of
   ``self.training`` (the trace runs in eval mode, so ``False``).  The model is therefore traced in both
   modes and the two graphs compared:

   * they differ only in bool arguments (eval ``False`` / train ``True``, or the negation): each such
     argument becomes a node reading the owning module's ``training`` flag at run time, so the pruned
     model honours ``.train()`` / ``.eval()`` like the original::

         before: dropout(x, p=0.5, training=False)
         after:  block_training = self.block.training
                 dropout(x, p=0.5, training=block_training)

   * they differ in structure (``if self.training: ...``): this cannot be expressed in one graph; a
     warning names the module and says the pruned model always runs its eval-mode code.

2. **Hooks.**  fx never runs the root's hooks and bakes traced-through submodules' hooks into the graph,
   so hooks are stripped from the private copy before tracing (the graph is the plain ``forward``) and
   recorded as ``HookRecord`` s; the rewrite re-registers them only when the user asks (``keep_hooks``).
"""
from __future__ import annotations

import operator
import warnings
from itertools import takewhile
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx

__all__ = ["HookRecord", "collect_hooks", "strip_hooks", "hooked_module_names", "link_training_reads",
           "link_training"]

# (kind, module attribute holding the hooks) — the hooks that change what a call computes or its gradient
_HOOK_STORES = (("forward_pre_hook", "_forward_pre_hooks"), ("forward_hook", "_forward_hooks"),
                ("backward_pre_hook", "_backward_pre_hooks"), ("backward_hook", "_backward_hooks"))


@dataclass(frozen=True)
class HookRecord:
    """One hook of the user's model: where, which kind, the function and its registration flags."""

    module: str  # qualified name; "" is the root
    kind: str  # "forward_pre_hook" | "forward_hook" | "backward_pre_hook" | "backward_hook"
    fn: Callable
    with_kwargs: bool = False
    always_call: bool = False

    def register_on(self, module: torch.nn.Module):
        """Register this hook on ``module`` (the corresponding module of the pruned model)."""
        if self.kind == "forward_pre_hook":
            return module.register_forward_pre_hook(self.fn, with_kwargs=self.with_kwargs)
        if self.kind == "forward_hook":
            return module.register_forward_hook(self.fn, with_kwargs=self.with_kwargs,
                                                always_call=self.always_call)
        if self.kind == "backward_pre_hook":
            return module.register_full_backward_pre_hook(self.fn)
        return module.register_full_backward_hook(self.fn)


def collect_hooks(model: torch.nn.Module) -> list[HookRecord]:
    """Every forward/backward hook registered on ``model`` or its submodules, in registration order."""
    records = []
    for name, module in model.named_modules():  # a module under two names: its hooks once, first name
        for kind, store in _HOOK_STORES:
            hooks = getattr(module, store, None) or {}
            for hook_id, fn in hooks.items():
                records.append(HookRecord(
                    name, kind, fn,
                    with_kwargs=hook_id in getattr(module, f"{store}_with_kwargs", {}),
                    always_call=hook_id in getattr(module, "_forward_hooks_always_called", {})
                    if kind == "forward_hook" else False))
    return records


def strip_hooks(model: torch.nn.Module) -> None:
    """Remove every forward/backward hook from ``model`` (a private copy: the user's dicts are not shared)."""
    for module in model.modules():
        for _, store in _HOOK_STORES:
            if getattr(module, store, None):
                setattr(module, store, type(getattr(module, store))())


def hooked_module_names(records: list[HookRecord]) -> frozenset[str]:
    """Non-root modules with hooks: traced as leaves so their hooks can fire on a ``call_module`` node."""
    return frozenset(r.module for r in records if r.module)


# ---- training reads ---------------------------------------------------------------------------------

class _ModeMismatch(Exception):
    def __init__(self, node: fx.Node, other: fx.Node | None = None):
        super().__init__(node.name)
        self.node, self.other = node, other


def _owners(node: fx.Node) -> list[str]:
    """Qualified names of the modules whose ``forward`` was running when ``node`` was made, outermost first
    (a ``call_module`` node's own module excluded: it was made by its caller)."""
    names = [entry[0] for entry in (node.meta.get("nn_module_stack") or {}).values()]
    if node.op == "call_module" and names and names[-1] == node.target:
        names.pop()
    return names


def _owner(node: fx.Node) -> str:
    """Qualified name of the module whose ``forward`` created ``node`` ("" for the root)."""
    names = _owners(node)
    return names[-1] if names else ""


def _diverging_owner(a: fx.Node, b: fx.Node | None) -> str:
    """Where the eval and train code part ways, from the first differing nodes' module stacks: if one stack
    extends the other, the deeper module (a ``DropPath`` whose train branch adds nodes, not the block
    around it); otherwise their innermost common module (``if self.training: aux = self.aux(x)``)."""
    x, y = _owners(a), _owners(b) if b is not None else _owners(a)
    short, long_ = sorted((x, y), key=len)
    if long_[:len(short)] == short:
        return long_[-1] if long_ else ""
    common = [p for p, _ in takewhile(lambda pq: pq[0] == pq[1], zip(x, y))]
    return common[-1] if common else ""


def _diff_args(a: Any, b: Any, where: tuple, out: list[tuple[tuple, bool]], node: fx.Node,
               pairs: dict[fx.Node, fx.Node]) -> None:
    """Collect the positions where eval arg ``a`` and train arg ``b`` are opposite bools; else they must match
    (nodes: ``pairs`` maps each eval node to the train node at the same position)."""
    if isinstance(a, bool) and isinstance(b, bool):
        if a != b:
            out.append((where, b))  # b: the train-mode value, so the flag itself (True) or its negation
        return
    if isinstance(a, (tuple, list)) and type(a) is type(b) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff_args(x, y, where + (i,), out, node, pairs)
        return
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        for k in a:
            _diff_args(a[k], b[k], where + (k,), out, node, pairs)
        return
    if isinstance(a, slice) and isinstance(b, slice):  # x[..., : x.shape[-1] // 2]: bounds may be nodes
        flags: list[tuple[tuple, bool]] = []
        _diff_args((a.start, a.stop, a.step), (b.start, b.stop, b.step), where, flags, node, pairs)
        if flags:  # a training flag inside a slice: not something one graph can read
            raise _ModeMismatch(node)
        return
    if isinstance(a, fx.Node) and isinstance(b, fx.Node):
        if pairs.get(a) is not b:
            raise _ModeMismatch(node)
        return
    same = a is b or (type(a) is type(b) and not isinstance(a, torch.Tensor) and _safe_eq(a, b))
    if not same:
        raise _ModeMismatch(node)


def _safe_eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _replace_at(value: Any, where: tuple, new: Any) -> Any:
    if not where:
        return new
    head, rest = where[0], where[1:]
    if isinstance(value, dict):
        return {k: (_replace_at(v, rest, new) if k == head else v) for k, v in value.items()}
    items = list(value)
    items[head] = _replace_at(items[head], rest, new)
    return type(value)(items) if isinstance(value, tuple) else items


def _same_target(a: fx.Node, b: fx.Node, root: torch.nn.Module) -> bool:
    """Same target; or two fx tensor constants (``_tensor_constantN``) holding equal tensors."""
    if a.target == b.target:
        return True
    if a.op != "get_attr":
        return False
    x, y = getattr(root, a.target, None), getattr(root, b.target, None)
    return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape \
        and x.dtype == y.dtype and bool(torch.equal(x, y))


def link_training_reads(eval_graph: fx.Graph, train_graph: fx.Graph,
                        root: torch.nn.Module) -> tuple[int, str | None]:
    """Make ``eval_graph`` read ``training`` flags where the two modes' graphs differ only in bools.

    ``root`` is the traced module (it holds both traces' tensor constants).  Returns (number of arguments linked, the module whose code differs structurally between the modes or
    None).  On a structural difference nothing is changed: the caller warns.
    """
    eval_nodes, train_nodes = list(eval_graph.nodes), list(train_graph.nodes)
    diffs: list[tuple[fx.Node, str, tuple, bool]] = []
    pairs: dict[fx.Node, fx.Node] = {}
    try:
        for a, b in zip(eval_nodes, train_nodes):
            if a.op != b.op or not _same_target(a, b, root):
                raise _ModeMismatch(a, b)
            found: list[tuple[tuple, bool]] = []
            _diff_args((a.args, a.kwargs), (b.args, b.kwargs), (), found, a, pairs)
            pairs[a] = b
            diffs += [(a, _owner(a), where, flag) for where, flag in found]
        if len(eval_nodes) != len(train_nodes):
            raise _ModeMismatch(eval_nodes[min(len(eval_nodes), len(train_nodes)) - 1])
    except _ModeMismatch as exc:
        return 0, _diverging_owner(exc.node, exc.other)
    for node, owner, where, flag in diffs:
        with eval_graph.inserting_before(node):
            read = eval_graph.get_attr(f"{owner}.training" if owner else "training")
            if not flag:  # the code reads ``not self.training``
                read = eval_graph.call_function(operator.not_, (read,))
        args_kwargs = _replace_at((node.args, node.kwargs), where, read)
        node.args, node.kwargs = args_kwargs
    return len(diffs), None


def link_training(model: torch.nn.Module, graph: fx.Graph, retrace: Callable[[], fx.Graph]) -> None:
    """Trace ``model`` again in train mode (``retrace``, same tracer settings) and link ``graph``'s training
    reads; warn, naming the module, about a difference one graph cannot express.  ``model`` (the private
    copy, traced in eval mode) is left in eval mode, without the train trace's tensor constants."""
    model.train()
    attrs_before = set(model.__dict__)
    try:
        try:
            train_graph = retrace()
        except Exception as exc:  # fx raises many types; all mean "cannot trace"
            first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
            warn_mode_dependent("", type(model).__name__, "fx cannot trace it in train mode: "
                                f"{type(exc).__name__}: {first_line}")
            return
        _, differing = link_training_reads(graph, train_graph, model)
    finally:
        model.eval()
        for attr in set(model.__dict__) - attrs_before:  # the train trace's tensor constants
            delattr(model, attr)
    if differing is not None:
        owner = model.get_submodule(differing) if differing else model
        warn_mode_dependent(differing, type(owner).__name__, "Python control flow on self.training")


def warn_mode_dependent(module: str, module_type: str, reason: str) -> None:
    """The one warning for Python code on ``self.training`` that a single graph cannot express."""
    warnings.warn(
        f"graphprune: module '{module or '<root>'}' ({module_type}) runs different Python code in train and "
        f"eval mode ({reason}; the first such module is named); the pruned model always runs its eval-mode code, so in train mode its "
        "outputs (dropout, drop-path, noise ...) differ from the original model's. Make the module a leaf "
        "(leaf_modules=[...]) to keep its own train-mode code.", stacklevel=5)
