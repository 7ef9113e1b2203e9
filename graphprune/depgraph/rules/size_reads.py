"""Size reads: widths a model reads from its tensors (``x.shape[i]``, ``x.size(i)``, ``aten.sym_size.int``).

A size read is Python arithmetic on shapes; pruning changes the shapes it reads, so every place a read
(or a number computed from reads) reaches a tensor op means one of two things:

1. a *size*: an entry of the output shape of ``view``/``reshape``/``expand``/``unflatten`` or of a
   constant-fill factory (``torch.zeros``/``ones``/``full``/``empty``, ``x.new_*``).  In the pruned model that
   entry must be the *planned* size of the output axis it gives — which need not be the size of the axis it
   was read from (timm-style ``B, N, C = x.shape; … .reshape(B, N, C)`` reads the residual width and gives
   the attention's inner width: two different groups);
2. a *number*: anything else (``h / h.shape[1]``, ``q * q.size(-1) ** -0.5``, a fill value, ``arange``
   bounds, comparisons).  The reference is the original model with the removed channels zeroed, which
   computes these numbers from the *original* sizes; so the pruned model must too.

Rules, in order of the stages:

* analysis (``couple``): reading a size constrains no channel (the read tensor's axes are touched, not
  coupled).  A read that flows into Python that cannot be evaluated here (below) freezes the axes it reads,
  with the reason: graphprune could not say what the pruned model would compute.
* rewrite (``bake_size_reads``, first step of ``passes.apply_rule_rewrites``): every number computed from
  reads is evaluated twice, on the original and on the pruned shapes.  Where the two differ, the pruned graph
  gets the original value as a literal (rule 2); where a size entry would not equal the planned size of its
  output axis, it gets the planned size as a literal (rule 1).  Everything else stays symbolic — batch and
  sequence sizes, and any width the plan leaves unchanged — so the pruned graph still accepts other batch
  sizes.  A literal already in the graph (``torch.export`` bakes sizes) is rule 2 as it stands, and the op's
  own rewrite updates it in a size position.

Evaluable Python: the read ops above (and ``numel``, ``dim``, ``ndim``), ``getitem`` on shapes, the
``operator`` and ``math`` functions, ``int``/``float``/``min``/``max``/``abs``/``round`` and ``torch.sym_*``.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx

from ..rule_context import Dim
from .table import register, register_method

__all__ = ["UNKNOWN", "SizeEvaluator", "SizeArg", "SizeEntries", "size_arg_of", "size_slots", "write_size_entries",
           "read_axes", "direct_read"]

aten = torch.ops.aten


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()

_PURE_FUNCTIONS = {getattr(operator, n) for n in (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs", "eq", "ne", "lt", "le", "gt",
    "ge", "and_", "or_", "xor", "not_", "invert", "lshift", "rshift")}
_PURE_FUNCTIONS |= {math.sqrt, math.floor, math.ceil, math.prod, math.log, math.log2, math.exp, math.isqrt,
                    int, float, min, max, abs, round, bool}
_PURE_FUNCTIONS |= {getattr(torch, n) for n in ("sym_float", "sym_int", "sym_max", "sym_min", "sym_not",
                                                "sym_sqrt", "sym_ite") if hasattr(torch, n)}


class SizeEvaluator:
    """Evaluates the Python numbers of a graph that are computed from tensor sizes.

    ``shape_of(value) -> tuple`` gives the sizes to read (original or pruned); ``value(node)`` is the number
    (int, float, bool or tuple) ``node`` computes, or ``UNKNOWN``.  Tensor-valued nodes are ``UNKNOWN``.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], shape_of: Callable[[str], tuple[int, ...]]):
        self.shapes = shapes
        self.shape_of = shape_of
        self.memo: dict[fx.Node, Any] = {}

    def value(self, node: Any) -> Any:
        if isinstance(node, (list, tuple)):
            items = [self.value(x) for x in node]
            return UNKNOWN if any(i is UNKNOWN for i in items) else type(node)(items)
        if isinstance(node, slice):
            parts = [self.value(v) for v in (node.start, node.stop, node.step)]
            return UNKNOWN if any(p is UNKNOWN for p in parts) else slice(*parts)
        if not isinstance(node, fx.Node):
            return node
        if node not in self.memo:
            self.memo[node] = self._compute(node)
        return self.memo[node]

    def _tensor(self, x: Any) -> str | None:
        return x.name if isinstance(x, fx.Node) and x.name in self.shapes else None

    def _compute(self, node: fx.Node) -> Any:
        if node.name in self.shapes:
            return UNKNOWN  # a tensor
        read = self._read(node)
        if read is not None:
            return read
        if node.op == "call_function" and (node.target in _PURE_FUNCTIONS or node.target is operator.getitem):
            args = [self.value(a) for a in node.args]
            kwargs = {k: self.value(v) for k, v in node.kwargs.items()}
            if any(a is UNKNOWN for a in args) or any(v is UNKNOWN for v in kwargs.values()):
                return UNKNOWN
            try:
                return node.target(*args, **kwargs)
            except Exception:  # e.g. getitem out of range on the pruned shapes: nothing to bake
                return UNKNOWN
        if node.op == "call_method" and node.target in ("numel", "__len__") and node.args:
            seq = self.value(node.args[0])
            if isinstance(seq, tuple):
                return math.prod(seq) if node.target == "numel" else len(seq)
        return UNKNOWN

    def _read(self, node: fx.Node) -> Any:
        """The value of a read of a tensor's sizes, or None when ``node`` is not one."""
        x = self._tensor(node.args[0]) if node.args else None
        if x is None:
            return None
        shape = tuple(self.shape_of(x))
        if node.op == "call_function" and node.target is getattr:
            return {"shape": shape, "ndim": len(shape)}.get(node.args[1])
        if node.op == "call_method":
            if node.target == "size":
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                return shape if dim is None else shape[dim] if isinstance(dim, int) else None
            if node.target in ("dim", "ndimension"):
                return len(shape)
            if node.target in ("numel", "nelement"):
                return math.prod(shape)
        if node.op == "call_function" and node.target is aten.sym_size.int and isinstance(node.args[1], int):
            return shape[node.args[1]]
        if node.op == "call_function" and node.target is aten.sym_numel.default:
            return math.prod(shape)
        return None


def read_axes(node: fx.Node, shapes: dict) -> tuple[str, list[int]] | None:
    """(tensor, axes) a size-read node reads, or None when ``node`` reads no size."""
    x = node.args[0] if node.args else None
    if not (isinstance(x, fx.Node) and x.name in shapes):
        return None
    nd = len(shapes[x.name])
    dim = None
    if node.op == "call_method" and node.target == "size":
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    elif node.op == "call_method" and node.target in ("numel", "nelement"):
        pass
    elif node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
        pass
    elif node.op == "call_function" and node.target is aten.sym_size.int:
        dim = node.args[1]
    elif node.op == "call_function" and node.target is aten.sym_numel.default:
        pass
    else:
        return None
    return x.name, [dim % nd] if isinstance(dim, int) else list(range(nd))


# ---- where ops take output sizes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeArg:
    """An op's output-shape argument: at positional ``index`` (as one list, or as varargs from there when
    ``varargs``) or keyword ``key``; entry j gives output axis ``j`` (``unflatten``: ``dim + j``)."""

    index: int
    key: str
    varargs: bool = False
    unflatten: bool = False


_SIZE_ARGS_BY_METHOD = {"view": SizeArg(1, "size", True), "reshape": SizeArg(1, "shape", True),
                        "expand": SizeArg(1, "size", True), "new_zeros": SizeArg(1, "size", True),
                        "new_ones": SizeArg(1, "size", True), "new_empty": SizeArg(1, "size", True),
                        "new_full": SizeArg(1, "size"), "unflatten": SizeArg(2, "sizes", unflatten=True)}
_SIZE_ARGS_BY_FUNCTION = {
    torch.reshape: SizeArg(1, "shape"), torch.zeros: SizeArg(0, "size", True), torch.ones: SizeArg(0, "size", True),
    torch.empty: SizeArg(0, "size", True), torch.full: SizeArg(0, "size"), torch.unflatten: SizeArg(2, "sizes",
                                                                                                   unflatten=True),
    aten.view.default: SizeArg(1, "size"), aten.reshape.default: SizeArg(1, "shape"),
    aten._unsafe_view.default: SizeArg(1, "size"), aten.expand.default: SizeArg(1, "size"),
    aten.zeros.default: SizeArg(0, "size"), aten.ones.default: SizeArg(0, "size"),
    aten.empty.memory_format: SizeArg(0, "size"), aten.full.default: SizeArg(0, "size"),
    aten.new_zeros.default: SizeArg(1, "size"), aten.new_ones.default: SizeArg(1, "size"),
    aten.new_empty.default: SizeArg(1, "size"), aten.new_full.default: SizeArg(1, "size"),
    aten.unflatten.int: SizeArg(2, "sizes", unflatten=True)}


def size_arg_of(node: fx.Node) -> SizeArg | None:
    if node.op == "call_method":
        return _SIZE_ARGS_BY_METHOD.get(node.target)
    if node.op == "call_function":
        try:
            return _SIZE_ARGS_BY_FUNCTION.get(node.target)
        except TypeError:  # unhashable target
            return None
    return None


@dataclass
class SizeEntries:
    """The output-shape entries of one node, where they came from, and the output axis of entry 0."""

    spec: SizeArg
    form: str  # "varargs", "list", "kwarg" or "whole" (one node giving the whole shape, e.g. ``x.shape``)
    entries: list
    first_axis: int


def size_slots(node: fx.Node, shapes: dict) -> SizeEntries | None:
    """The output-shape entries of ``node`` (None when it takes no output shape or it cannot be read)."""
    spec = size_arg_of(node)
    if spec is None or node.name not in shapes:
        return None
    first_axis = 0
    if spec.unflatten:
        x, dim = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if not (isinstance(x, fx.Node) and x.name in shapes and isinstance(dim, int)):
            return None
        first_axis = dim % len(shapes[x.name])
    if spec.key in node.kwargs:
        given, form = node.kwargs[spec.key], "kwarg"
    elif len(node.args) > spec.index + 1 and spec.varargs:
        given, form = list(node.args[spec.index:]), "varargs"
    elif len(node.args) > spec.index:
        given, form = node.args[spec.index], "list"
    else:
        return None
    if isinstance(given, fx.Node):
        return SizeEntries(spec, "whole", [given], first_axis)
    if not isinstance(given, (list, tuple)):
        given = [given]  # ``x.view(n)``: one int given as varargs
        form = "varargs" if form == "list" else form
    return SizeEntries(spec, form, list(given), first_axis)


def write_size_entries(node: fx.Node, slots: SizeEntries, entries: list) -> None:
    spec = slots.spec
    if slots.form == "kwarg":
        node.kwargs = {**node.kwargs, spec.key: type(node.kwargs[spec.key])(entries)
                       if isinstance(node.kwargs[spec.key], (list, tuple)) else list(entries)}
    elif slots.form == "varargs":
        node.args = tuple(node.args[:spec.index]) + tuple(entries)
    else:  # "list" or "whole": one list argument
        args = list(node.args)
        old = args[spec.index]
        args[spec.index] = type(old)(entries) if isinstance(old, (list, tuple)) else list(entries)
        node.args = tuple(args)


# ---- analysis rows ---------------------------------------------------------------------------------------
def _unevaluable_user(node: fx.Node, shapes: dict) -> fx.Node | None:
    """The first node downstream of a size read, through non-tensor nodes, whose value cannot be evaluated."""
    evaluator = SizeEvaluator(shapes, lambda v: shapes[v])
    tuple_ops = {k.split("#")[0] for k in shapes if "#" in k}  # ops returning tensors as tuple items
    stack, seen = list(node.users), set()
    while stack:
        user = stack.pop()
        if user in seen or user.name in shapes or user.name in tuple_ops or user.op == "output":
            continue  # tensor ops and the output take the number as an argument: the rewrite handles them
        seen.add(user)
        if evaluator.value(user) is UNKNOWN:
            if user.users:  # an unknown value computed from sizes flows on
                return user
            continue  # it only consumes the number (``torch._assert(C == 16)``): the rewrite gives it the original
        stack.extend(user.users)
    return None


@register_method("size", "dim", "numel", "nelement", "ndimension")
@register(getattr, aten.sym_numel.default)
def size_read(ctx) -> None:
    """Reading sizes constrains no channel; where the number goes is handled by ``bake_size_reads``.

    A read that flows into Python this module cannot evaluate freezes the axes it reads (fail closed)."""
    node = ctx.node
    if node.target is getattr and node.args[1] not in ("shape", "dtype", "device", "ndim", "is_cuda", "layout"):
        return
    x = ctx.value_of(node.args[0])
    if x is None:
        return
    ctx.touch(*ctx.dims(x))
    read = read_axes(node, ctx._b.shapes)
    blocker = _unevaluable_user(node, ctx._b.shapes) if read is not None else None
    if blocker is not None:
        for axis in read[1]:
            ctx.freeze(Dim(x, axis), f"its size flows into '{blocker.name}' ({blocker.target}), which graphprune "
                                     "cannot evaluate: pruning could silently change that number")


def _factory_couple(ctx) -> None:
    """Constant-fill tensors (``zeros``/``ones``/``full``/``empty``, ``x.new_*``): every element on an axis is
    the same value, so any axis may lose elements; the rewrite gives each axis its planned size.  An axis
    whose size was read from a tensor axis shrinks with it (equal counts are what is needed)."""
    out = ctx.out
    if out is None:
        return
    x = ctx.value_of(ctx.node.args[0]) if ctx.node.args else None
    if x is not None:  # ``x.new_zeros(...)``: only x's dtype and device are read
        ctx.touch(*ctx.dims(x))
    slots = size_slots(ctx.node, ctx._b.shapes)
    if slots is None:
        return
    entries = slots.entries
    if slots.form == "whole":  # ``x.new_zeros(y.shape)``: entry j is y's axis j
        read = read_axes(entries[0], ctx._b.shapes)
        if read is None or len(read[1]) != ctx.ndim(out) or entries[0].target in ("numel", "nelement"):
            return
        entries = [Dim(read[0], a) for a in read[1]]
    if len(entries) != ctx.ndim(out):
        return
    for j, entry in enumerate(entries):
        d = Dim(out, j)
        read = read_axes(entry, ctx._b.shapes) if isinstance(entry, fx.Node) else None
        src = entry if isinstance(entry, Dim) else direct_read(entry, ctx._b.shapes)
        if src is not None and ctx.shape(src.value)[src.axis] == ctx.shape(out)[j] and src.value != out:
            ctx.same(d, src)
        elif read is None:
            ctx.touch(d)


def direct_read(entry: Any, shapes: dict) -> Dim | None:
    """The one tensor axis an entry reads directly (``x.size(i)``, ``x.shape[i]``, ``sym_size(x, i)``)."""
    if not isinstance(entry, fx.Node):
        return None
    read = read_axes(entry, shapes)
    if read is not None and len(read[1]) == 1 and entry.target not in ("numel", "nelement"):
        return Dim(read[0], read[1][0])
    if entry.op == "call_function" and entry.target is operator.getitem and isinstance(entry.args[1], int):
        src = entry.args[0]
        inner = read_axes(src, shapes) if isinstance(src, fx.Node) else None
        if inner is not None and len(inner[1]) > 1:
            return Dim(inner[0], inner[1][entry.args[1] % len(inner[1])])
    return None


def _rewrite_factory(rctx) -> None:
    """Literal sizes become the planned sizes (number-valued entries are ``bake_size_reads``' job)."""
    slots = size_slots(rctx.node, rctx.graph.shapes)
    if slots is None or slots.form == "whole":
        return
    new = [rctx.new_size(Dim(rctx.out, slots.first_axis + j)) if isinstance(e, int) and e != -1 else e
           for j, e in enumerate(slots.entries)]
    write_size_entries(rctx.node, slots, new)


register_method("new_zeros", "new_ones", "new_empty", "new_full", rewrite=_rewrite_factory)(_factory_couple)
register(torch.zeros, torch.ones, torch.empty, torch.full, aten.zeros.default, aten.ones.default,
         aten.empty.memory_format, aten.full.default, aten.new_zeros.default, aten.new_ones.default,
         aten.new_empty.default, aten.new_full.default, rewrite=_rewrite_factory)(_factory_couple)

