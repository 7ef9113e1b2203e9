"""Stage 1, third front end: capture a model by *running* it on real example inputs.

Detection models (torchvision Faster R-CNN, RetinaNet, SSD, FCOS, Mask/Keypoint R-CNN) iterate over
tensors, call NMS and index with masks: ``torch.fx`` stops at the first iteration and ``torch.export``
at the first data-dependent size.  Running the model once and logging the ATen ops that actually
executed always works — at the price that the log is specialised to what ran.  This module records that
log as the same kind of graph the torch.export front end builds, so the ATen rule table
(``depgraph/rules/aten.py``), grouping, importance, search and verification are reused unchanged.

What is done, in order (``capture_by_running``):

1. *Record.*  ``make_fx(tracing_mode="real", pre_dispatch=True)`` runs ``functional_call`` of a private
   eval-mode copy with its parameters and buffers passed as inputs: pre-dispatch ATen ops
   (``conv2d``, ``linear``, ``batch_norm`` — one node per layer, as with torch.export).  Forward
   pre/post hooks on every module write the module scope into each node's ``nn_module_stack``.
   Reading a tensor's value into Python (``.item()``, ``int(t)``, ``if t:``) is allowed and logged as a
   node (``_error_on_data_dependent_ops=False``); rule 3 decides what it costs.
2. *Name the state.*  Parameter and buffer inputs become ``get_attr`` nodes with their qualified names in
   the user's model (``backbone.body.layer1.0.conv1.weight``), so plans, reports and rewrites name them as
   the other front ends do; tensors the model builds from Python constants become buffers
   ``_recorded_constant<i>``.  The graph keeps the model's output structure (pytree code generation).
3. *Freeze what could differ on another input* (``data_dependent_nodes``), each with its reason — the
   dependency graph freezes every tensor those nodes touch, never pruning them blind:

   a. ops whose output size depends on tensor values (ATen's ``dynamic_output_shape`` /
      ``data_dependent_output`` tags — ``nonzero``, ``masked_select``, ``unique``, boolean ``index`` —
      and ``torchvision::nms``);
   b. after a value read into Python from data that derives from the model input, every later op of the
      same module call (and of the calls it makes): its Python control flow may depend on that value, and
      the branch not taken was never seen;
   c. the model is recorded a second time on a probe input of the same shape and different content
      (the example flipped along its last axis); the two logs are aligned op by op (module scope and
      target).  An op that ran on one input only, an op whose non-tensor arguments differ, and an op whose
      output size differs while its inputs' sizes do not, are frozen.

4. *Replay the selections.*  Every op of rule 3a, and every op whose output size differed on the probe,
   becomes ``replayed(<what it returned on the example>, *its inputs)``: the graph's literals (box counts,
   ``topk`` sizes) hold only for that run's selections, and a pruned model equals the *masked* original,
   whose scores select differently.  With the selections fixed, the pruned graph and its masked reference
   stay comparable value by value; the inputs stay arguments so that rule 3's freeze still reaches them.
5. *Shapes* by ``trace.propagate_shapes`` on the example inputs, as for the other front ends.

The pruned result of a recorded model must be the user's own class with sliced layers (the recorded
graph replays one input's control flow): ``prune`` asks for ``output="module"``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.fx as fx
import torch.fx.traceback as fx_traceback
from torch.fx.experimental.proxy_tensor import make_fx
from torch.func import functional_call
from torch.utils import _pytree as pytree

from ..trace import TraceError, TracedModel, normalize_inputs, private_copy, propagate_shapes
from ..trace_state import collect_hooks
from .record_freeze import _SCOPE, _SIZE_DIFFERS, _has_dynamic_size, data_dependent_nodes, probe_inputs

__all__ = ["capture_by_running", "data_dependent_nodes", "record_graph", "specialised_to_example", "RECORDED_CONSTANT"]

RECORDED_CONSTANT = "_recorded_constant"


def _one_fake_mode() -> contextlib.AbstractContextManager:
    """A tracing context holding one FakeTensorMode for the whole recording.

    NOTE: ``make_fx(tracing_mode="real")`` stores a fake copy of every value in ``node.meta["val"]`` and, finding
    no fake mode in a tracing context, builds a new ``FakeTensorMode`` per value — each one extracting the Python
    stack (deep inside a detector).  Sharing one cut an SSDlite recording from 2.4 s to 1.6 s, same graph and metadata.
    """
    try:
        from torch._guards import TracingContext, tracing
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError:  # private API: without it the recording is only slower
        return contextlib.nullcontext()
    return tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True)))


@contextlib.contextmanager
def _module_scopes(model: torch.nn.Module) -> Iterator[list[tuple[str, str]]]:
    """Write the stack of running module calls into ``fx.traceback.current_meta`` (copied onto each node).

    NOTE: each call gets its own key (``name@k``), so a head shared across pyramid levels gives one scope
    per call; the stack is also kept as a list, whose innermost entry names a module that failed.
    """
    stack: list[tuple[str, str]] = []
    calls = {"n": 0}

    def publish():
        fx_traceback.current_meta[_SCOPE] = {f"{name}@{k}": (name, cls) for name, cls, k in stack}

    def enter(name: str, cls: str):
        def hook(*_):  # returns None: inputs unchanged
            calls["n"] += 1
            stack.append((name, cls, calls["n"]))
            publish()
        return hook

    def leave(*_):
        if stack:
            stack.pop()
        publish()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name, type(module).__name__)))
        handles.append(module.register_forward_hook(leave))
    try:
        with fx_traceback.preserve_node_meta():
            publish()
            yield stack
    finally:
        for handle in handles:
            handle.remove()


def _state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    return state


def record_graph(model: torch.nn.Module, inputs: tuple) -> fx.GraphModule:
    """The raw recording: ``make_fx`` of ``functional_call(model, state, inputs)`` (state first, then inputs).

    Raises:
        TraceError: the model failed while running; the message names the innermost module.
    """
    state = _state_of(model)
    inputs = tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in inputs)  # in-place ops: on copies

    def run(state, *args):
        return functional_call(model, state, args)

    with _module_scopes(model) as stack, torch.no_grad(), _one_fake_mode():
        try:
            return make_fx(run, tracing_mode="real", pre_dispatch=True,
                           _error_on_data_dependent_ops=False)(state, *inputs)
        except Exception as exc:  # any failure of the user's forward or of the recorder
            name, cls, _ = stack[-1] if stack else ("", type(model).__name__, 0)
            raise TraceError(f"recording module '{name or '<root>'}' ({cls}) on the example inputs failed: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}\n"
                             "Ways through: check that the model runs on example_inputs in eval mode "
                             "(model.eval(); model(*example_inputs)).") from exc


class _Outputs(fx.Interpreter):
    """Replays the raw recording and keeps the real outputs of the nodes asked for (meta holds fakes only)."""

    def __init__(self, gm: fx.GraphModule, wanted: set[str]):
        super().__init__(gm)
        self.wanted, self.values = wanted, {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n.name in self.wanted:
            self.values[n.name] = pytree.tree_map_only(torch.Tensor, lambda t: t.detach().clone(), result)
        return result


def _recorded_values(raw: fx.GraphModule, model: torch.nn.Module, inputs: tuple,
                     wanted: set[str]) -> dict[str, Any]:
    """Node name -> what each node in ``wanted`` (data-dependent sizes) returned on the example inputs."""
    if not wanted:
        return {}
    private_state = {k: v.detach().clone() for k, v in _state_of(model).items()}  # in-place ops write copies
    runner = _Outputs(raw, wanted)
    with torch.no_grad():
        runner.run(private_state, *inputs)
    return runner.values


def _named_state_graph(raw: fx.GraphModule, model: torch.nn.Module, n_state: int, inputs: tuple,
                       class_name: str, replay: set[str]) -> fx.GraphModule:
    """Rule 2: state placeholders -> ``get_attr`` of qualified names; constants -> buffers; I/O structure kept."""
    state = _state_of(model)
    state_names = list(state)
    recorded = _recorded_values(raw, model, inputs, replay)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    placeholders = [n for n in raw.graph.nodes if n.op == "placeholder"]
    root = torch.nn.Module()
    constants = 0
    for i, node in enumerate(placeholders):
        if i < n_state:
            env[node] = graph.get_attr(state_names[i])
        else:
            env[node] = graph.placeholder(f"input_{i - n_state}" if len(placeholders) - n_state > 1 else "x")
        env[node].meta = dict(node.meta)
    for node in raw.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "get_attr":  # a tensor built from Python values: kept as a buffer of the graph
            name = f"{RECORDED_CONSTANT}{constants}"
            constants += 1
            setattr(root, name, getattr(raw, node.target))
            env[node] = graph.get_attr(name)
            env[node].meta = dict(node.meta)
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node.name in recorded:
            env[node] = _replay_node(graph, root, env[node], recorded[node.name])
    for i in range(n_state):  # NOTE: every tensor, used or not: the pruned model keeps the user's names
        _attach(root, state_names[i], state[state_names[i]])
    for node in list(graph.nodes):
        if node.op == "get_attr" and not node.users:  # a layer that did not run on the example
            graph.erase_node(node)
    in_spec = pytree.tree_flatten(tuple(inputs))[1]
    out_spec = raw.graph._codegen.pytree_info.out_spec
    graph._codegen = fx.graph._PyTreeCodeGen(fx.graph._PyTreeInfo(
        [p.target for p in graph.nodes if p.op == "placeholder"], in_spec, out_spec))
    gm = fx.GraphModule(root, graph, class_name)
    present = dict(gm.named_parameters(remove_duplicate=False))
    present.update(dict(gm.named_buffers(remove_duplicate=False)))
    for name in state_names[:n_state]:  # GraphModule copied the used ones; keep the rest under their names
        if name not in present:
            _attach(gm, name, state[name])
    gm.graph.lint()
    gm.eval()
    return gm


def replayed(recorded: Any, *_inputs: Any) -> Any:
    """A data-dependent op of the recording, replayed: what it returned on the example inputs.

    NOTE: the inputs stay arguments so that the dependency graph sees (and freezes) every tensor the op read.
    """
    return recorded


def _replay_node(graph: fx.Graph, root: torch.nn.Module, call: fx.Node, value: Any) -> fx.Node:
    """Rule 4: ``call`` (nonzero, nms, boolean index …) becomes ``replayed(<its result>, *inputs)``.

    NOTE: the recorded graph replays one run's control flow; its literals (box counts, ``topk`` sizes) hold
    only if the selections do too.  A pruned model equals the *masked* original, whose scores (and so its
    selections) differ from the original's; replaying the recorded selections keeps every size of the graph
    fixed, so the pruned graph and its masked reference stay comparable value by value.
    """
    flat, spec = pytree.tree_flatten(value)
    with graph.inserting_before(call):
        leaves = []
        for t in flat:
            name = f"{RECORDED_CONSTANT}_replay{len(root._buffers)}"
            root.register_buffer(name, t.detach().clone())
            leaves.append(graph.get_attr(name))
    with graph.inserting_after(call):
        replay = graph.call_function(replayed, (pytree.tree_unflatten(leaves, spec),
                                                *call.all_input_nodes))
    replay.meta = dict(call.meta)
    call.replace_all_uses_with(replay)
    graph.erase_node(call)
    return replay


def _attach(root: torch.nn.Module, qualified: str, tensor: torch.Tensor) -> None:
    """Put ``tensor`` on ``root`` under ``qualified``: a parameter as a parameter, a buffer as a buffer."""
    *path, field = qualified.split(".")
    module = root
    for part in path:
        if not hasattr(module, part):
            module.add_module(part, torch.nn.Module())
        module = getattr(module, part)
    if isinstance(tensor, torch.nn.Parameter):
        module.register_parameter(field, tensor)
    else:
        module.register_buffer(field, tensor)


def capture_by_running(model: torch.nn.Module, example_inputs: Any, *, probe: Any = "flip") -> TracedModel:
    """Record a private copy of ``model`` running on ``example_inputs`` (module docstring, rules 1-5).

    Args:
        model: any ``nn.Module`` that runs on ``example_inputs`` in eval mode; it is never modified.
        example_inputs: a tensor or tuple of tensors (positional inputs).
        probe: inputs for the second recording (rule 3c): ``"flip"`` (default: the example flipped along its
            last axis), a tensor / tuple of tensors of the same shapes, or None to skip the comparison.

    Returns:
        A ``TracedModel`` (``front_end="record"``) whose graph holds ATen ops, with ``frozen_nodes`` set.

    Raises:
        TraceError: the model does not run on the inputs (the message names the module).
    """
    inputs = normalize_inputs(example_inputs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    private = private_copy(model)
    was_training = private.training
    private.eval()
    n_state = len(_state_of(private))
    raw = record_graph(private, inputs)
    probe_raw = None
    if probe is not None:
        probe_in = probe_inputs(inputs) if isinstance(probe, str) and probe == "flip" else normalize_inputs(probe)
        probe_raw = record_graph(private, probe_in)
    frozen = data_dependent_nodes(raw, probe_raw)
    replay = {n.name for n in raw.graph.nodes if n.op == "call_function" and
              (_has_dynamic_size(n) or frozen.get(n.name) == _SIZE_DIFFERS)}
    gm = _named_state_graph(raw, private, n_state, inputs, type(model).__name__, replay)
    renamed = {old.name: new.name for old, new in zip(
        [n for n in raw.graph.nodes if n.op not in ("placeholder", "get_attr", "output")],
        [n for n in gm.graph.nodes if n.op not in ("placeholder", "get_attr", "output")])}
    macs: list[float] = []
    try:
        shapes = propagate_shapes(gm, inputs, macs)
    except Exception as exc:
        raise TraceError(f"the recorded graph failed to replay on example_inputs: {type(exc).__name__}: "
                         f"{exc}") from exc
    return TracedModel(gm=gm, example_inputs=inputs, was_training=was_training, shapes=shapes,
                       counted_macs=macs[0] if macs else None, source=private_copy(model),
                       hooks=collect_hooks(model), front_end="record",
                       frozen_nodes={renamed.get(k, k): v for k, v in frozen.items()})


def specialised_to_example(traced: TracedModel) -> str:
    """Why a recorded graph only holds for its example input ('' when nothing in it depends on the data)."""
    if traced.front_end != "record" or not traced.frozen_nodes:
        return ""
    name, why = next(iter(traced.frozen_nodes.items()))
    return (f"the recorded graph replays the example's data-dependent control flow ({len(traced.frozen_nodes)} "
            f"data-dependent node(s), e.g. '{name}': {why}); on another input it would compute something else")
