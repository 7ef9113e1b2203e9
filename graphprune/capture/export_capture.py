"""Stage 1, second front end: capture a model with ``torch.export`` where ``torch.fx`` symbolic tracing fails.

``torch.fx`` runs ``forward`` on proxies, so Python that inspects values (iterating a proxy, ``inspect``
on ``co_varnames``, data-dependent ``if``) stops it: Hugging Face transformers 5.x and many timm families.
``torch.export`` (non-strict) runs ``forward`` on fake tensors and records the ATen ops it dispatches, so
that Python simply runs.  The result feeds the same pipeline as an fx trace: a ``TracedModel`` whose
graph is an ordinary ``fx.GraphModule``, only its ``call_function`` targets are ATen overloads
(``aten.linear.default``, ``aten.view.default`` …) whose channel rules live in ``depgraph/rules/aten.py``.

What is done to the exported program, and why:

1. *Private copy, eval mode.*  ``trace.private_copy`` of the model (buffers cloned, hooks stripped) is
   exported in eval mode, so dropout is off and BatchNorm uses running statistics — both are baked into the graph as constants (``train=False``
   arguments), as in the fx path, where ``self.training`` branches are traced as in inference.
2. *Pre-dispatch ATen IR, not Core ATen.*  ``ep.module()`` is used as is, without ``run_decompositions``:
   its ops are the composite ones the model called (``linear``, ``layer_norm``,
   ``scaled_dot_product_attention``), each a single node with its parameters as arguments — one rule per
   op, and the pruned graph exports to ONNX as those ops.  Core ATen would split ``linear`` into
   ``permute`` + ``addmm`` and ``layer_norm`` into a tuple-returning ``native_layer_norm``.
3. *Unlifted parameters.*  ``ep.module()`` turns lifted parameter inputs back into ``get_attr`` nodes on
   submodules of the original names (``vit.layers.0.mlp.fc1.weight``), so plans, reports and rewrites name
   parameters exactly as the fx path does.  The tensors are the user's own (shared, read only), as with
   ``trace``; every rewrite replaces them.
4. *No guard call.*  ``ep.module()`` calls a ``_guards_fn`` submodule that checks the input shapes the
   program was specialised to.  It is removed: graphprune's graphs are specialised to their example
   inputs anyway, and an opaque call on the model input would only add a node without a rule.  The
   graph moves into a plain ``GraphModule`` (``ep.module()``'s ``train()``/``eval()`` raise) and forgets
   export's tracer class, which cannot re-trace the code when a saved pruned model is loaded.
5. *Input and output structure kept.*  The graph keeps export's pytree code generation: it is called with
   the model's positional inputs, and returns what the model returned (a Hugging Face ``ModelOutput``
   keeps its ``.logits``).  The graph's output node holds the flat tensors.  (fx pickling does not keep
   that structure: a pruned model saved and loaded with ``trusted=True`` returns the fields as a dict.)
6. *Constants.*  A plain tensor attribute the model reads (not a parameter or buffer) is lifted by export
   as a constant and comes back as a *buffer* of the plain GraphModule: rules couple it like any buffer,
   and it is sliced with the channels it scales.  Tensors created inside ``forward`` from Python values
   (``arange`` position ids, attention masks) are nodes without tensor inputs and without a rule: frozen.
7. *Autocast-off regions inlined.*  ``with torch.autocast(..., enabled=False)`` becomes a higher-order
   ``wrap_with_autocast`` call of a submodule; its body is inlined (exact outside any autocast).  Every
   other higher-order op (``cond``, ``wrap_with_set_grad_enabled`` …) is refused with the node named.
8. *Static shapes.*  Export specialises every size to the example inputs, the batch size included
   (``view(x, [1, 17, -1, 16])``): the pruned graph runs on inputs of those shapes.  Capture with the
   batch size you will fine-tune or serve with.  (Graphs exported with dynamic sizes read them with
   ``aten.sym_size.int``; ``rules/aten.py`` couples or freezes those reads.)
"""
from __future__ import annotations

import contextlib
import operator
import re
from typing import Any, Iterator

import torch
import torch.fx as fx

from ..trace import TraceError, TracedModel, normalize_inputs, private_copy, propagate_shapes
from ..trace_state import collect_hooks

__all__ = ["capture_with_export"]

_GUARDS = "_guards_fn"


def _export_hint(exc: Exception) -> str:
    """The first line of an export error, plus the source location export reports, if any."""
    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else type(exc).__name__
    where = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', text)
    if where:
        path, line, fn = where[-1]
        first += f" (at {path}:{line} in {fn})"
    return first


@contextlib.contextmanager
def _module_stack(model: torch.nn.Module) -> Iterator[list[tuple[str, str]]]:
    """The (qualified name, class) of every module whose ``forward`` is running, innermost last.

    NOTE: non-strict export runs ``forward`` as Python, so hooks fire; a module whose ``forward`` raised
    never pops, and the innermost one left is where capture failed.  Hooks go on the private copy only
    and are removed before the graph is unlifted.
    """
    stack: list[tuple[str, str]] = []

    def enter(entry):
        def hook(*_):  # returns None: the module's input and output stay as they are
            stack.append(entry)
        return hook

    def leave(*_):
        stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter((name or "<root>", type(module).__name__))))
        handles.append(module.register_forward_hook(leave))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def _export(model: torch.nn.Module, inputs: tuple, strict: bool) -> torch.export.ExportedProgram:
    with _module_stack(model) as stack:
        try:
            return torch.export.export(model, inputs, strict=strict)
        except Exception as exc:  # export raises many types; all mean "cannot capture"
            name, cls = stack[-1] if stack else ("<root>", type(model).__name__)
            raise TraceError(
                f"torch.export could not capture module '{name}' ({cls}) (strict={strict}): "
                f"{type(exc).__name__}: {_export_hint(exc)}\nWays through: export runs Python control flow on "
                "sizes but not on tensor values, so make the failing code independent of the data (or express "
                "it with torch.cond); strict=False if strict was on; or the fx front end (graphprune.trace) "
                f"with leaf_modules=['{name}'] to keep that module opaque."
            ) from exc


def _plain_graph_module(unlifted: fx.GraphModule, class_name: str) -> fx.GraphModule:
    """A plain ``fx.GraphModule`` with the unlifted graph, minus the ``_guards_fn`` call.

    NOTE: ``ep.module()`` is a ``_StatefulGraphModule`` whose ``train()``/``eval()`` raise; the pipeline
    switches modes (shape propagation in eval, the pruned model back to the user's mode, fine-tuning), so
    the graph moves into an ordinary GraphModule.  Its parameters are copied over by reference along their
    ``get_attr`` paths; its pytree code generation (model input and output structure) comes with the graph.
    """
    graph = unlifted.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == _GUARDS:
            if node.users:
                raise TraceError(f"unexpected use of export's input guard '{node.name}' in the graph")
            graph.erase_node(node)
    graph._tracer_cls = None  # NOTE: export's tracer cannot re-trace the code when a saved model is loaded
    gm = fx.GraphModule(unlifted, graph, class_name)
    gm.graph.lint()
    gm.eval()
    return gm


def _is_autocast_off(node: fx.Node) -> bool:
    """A ``wrap_with_autocast(device, dtype, enabled=False, cache, submodule, *inputs)`` call."""
    return node.op == "call_function" and type(node.target).__name__ == "WrapWithAutocast" \
        and len(node.args) > 4 and node.args[2] is False and node.args[4].op == "get_attr"


def _inline_autocast_off(gm: fx.GraphModule) -> None:
    """Inline the body of every ``with torch.autocast(..., enabled=False)`` region (EfficientViT, RoPE code).

    NOTE: outside any autocast region, switching autocast off changes nothing, so the inlined ops compute
    exactly what the region did.  (Run under an outer ``torch.autocast``, the inlined ops would follow it.)
    """
    for node in [n for n in gm.graph.nodes if _is_autocast_off(n)]:
        body: fx.GraphModule = gm.get_submodule(node.args[4].target)
        env = dict(zip([n for n in body.graph.nodes if n.op == "placeholder"], node.args[5:]))
        with gm.graph.inserting_before(node):
            for inner in body.graph.nodes:
                if inner.op == "get_attr":
                    raise TraceError(f"autocast region '{node.name}' reads '{inner.target}' itself; "
                                     "graphprune cannot inline it")
                if inner.op == "output":
                    results = [env[r] for r in inner.args[0]]
                elif inner.op != "placeholder":
                    env[inner] = gm.graph.node_copy(inner, lambda n: env[n])
        for user in list(node.users):  # getitem(region, i) -> i-th result
            user.replace_all_uses_with(results[user.args[1]])
            gm.graph.erase_node(user)
        submodule = node.args[4]
        gm.graph.erase_node(node)
        if not submodule.users:
            gm.graph.erase_node(submodule)
            gm.delete_submodule(submodule.target)
    gm.graph.lint()
    gm.recompile()


def _check_graph(gm: fx.GraphModule) -> None:
    """Every op must be an ATen overload, ``getitem`` or a parameter read: anything else is a capture we
    do not understand (a higher-order op such as ``cond`` or ``wrap_with_set_grad_enabled``)."""
    for node in gm.graph.nodes:
        if node.op in ("call_module", "call_method"):
            raise TraceError(f"torch.export produced a {node.op} node '{node.name}' ({node.target}); "
                             "graphprune's export front end handles ATen-op graphs only")
        if node.op == "call_function" and not isinstance(node.target, torch._ops.OpOverload) \
                and node.target is not operator.getitem:
            raise TraceError(f"torch.export produced a call to {node.target} at node '{node.name}', which "
                             "graphprune cannot prune through; try the fx front end (graphprune.trace)")


def capture_with_export(model: torch.nn.Module, example_inputs: Any, *, strict: bool = False) -> TracedModel:
    """Capture a private copy of ``model`` with ``torch.export`` and propagate shapes.

    The user's module is never modified; its tensors are shared read only, as with ``graphprune.trace``.

    Args:
        model: any ``nn.Module`` that ``torch.export.export`` can capture.
        example_inputs: a tensor or tuple of tensors with the shapes the model will see.
        strict: forwarded to ``torch.export.export`` (``False``: run ``forward`` as Python).

    Returns:
        A ``TracedModel`` whose graph holds ATen ops; ``build_dependency_graph`` accepts it as it is.

    Raises:
        TraceError: export failed (the message carries export's reason and where), or the captured graph
            holds something other than ATen ops, or it does not run on ``example_inputs``.
    """
    inputs = normalize_inputs(example_inputs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    private = private_copy(model)  # NOTE: buffers cloned, hooks stripped: export runs forward as Python
    was_training = private.training
    private.eval()
    gm = _plain_graph_module(_export(private, inputs, strict).module(), type(model).__name__)
    _inline_autocast_off(gm)
    _check_graph(gm)
    macs: list[float] = []
    try:
        shapes = propagate_shapes(gm, inputs, macs)
    except Exception as exc:
        raise TraceError(f"the exported graph failed to run on example_inputs: {type(exc).__name__}: {exc}") from exc
    return TracedModel(gm=gm, example_inputs=inputs, was_training=was_training, shapes=shapes,
                       counted_macs=macs[0] if macs else None, source=private_copy(model),
                       hooks=collect_hooks(model), front_end="export")
