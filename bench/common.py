"""Shared helpers for ``bench/zoo.py``, ``bench/budget.py`` and ``bench/speed.py``.

One place for: building torchvision models the same way every time, running each pruner the same way
(graphprune and Torch-Pruning), formatting errors, per-stage time limits, and writing tables + JSON.

The two pruners are configured as follows (everywhere in ``bench/``):

* **graphprune** — ``graphprune.prune(model, budget, example_inputs=x, strategy, importance="l2")``,
  *budget* = fraction of dense MACs kept.  No ``ignored_layers``: the model's output dims are frozen by
  graphprune itself (reason ``model output``), which is what ignoring the classifier means.
* **Torch-Pruning 1.6** — ``tp.pruner.MagnitudePruner`` with ``MagnitudeImportance(p=2)``,
  ``pruning_ratio`` = fraction of *channels removed* per layer, ``global_pruning=False``, the final
  classifier layer in ``ignored_layers``; no per-architecture options (``num_heads`` etc.).
  NOTE: a channel ratio of 0.5 removes roughly 3/4 of a plain conv net's MACs (both in and out channels
  of a conv shrink), so its MACs ratio is not matched to graphprune's budget; ``zoo.py`` compares
  *coverage* (which models each tool can prune at all), ``budget.py`` graphprune's budget precision.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

# builder kwargs that the zoo needs beyond ``weights=None``
BUILD_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}
DEFAULT_SIZE = {"inception_v3": 299}
NUM_CLASSES = 1000


# ----------------------------------------------------------------------------------------------- models

@dataclass(frozen=True)
class ModelSpec:
    """A torchvision classification model: how to build it and which input it gets."""

    name: str
    size: int
    params_m: float  # dense parameter count in millions (torchvision weight metadata; 0 if unknown)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.size, self.size)


TIMM = "timm:"  # zoo names with this prefix are built by timm.create_model(pretrained=False)


def _meta_params(name: str) -> float:
    """Parameter count from torchvision's weight metadata (no download, no model build); timm models
    are built on the meta device (no memory, no weights)."""
    from torchvision.models import get_model_weights

    if name.startswith(TIMM):
        import timm

        try:
            with torch.device("meta"):
                return sum(p.numel() for p in timm.create_model(name[len(TIMM):], pretrained=False).parameters()) / 1e6
        except Exception:
            return float("inf")

    try:
        return get_model_weights(name).DEFAULT.meta["num_params"] / 1e6
    except Exception:  # a model without published weights: order it last
        return float("inf")


def zoo_specs(names: Iterable[str] | None = None, size: int | None = None) -> list[ModelSpec]:
    """Every torchvision classification model (or ``names``), ordered small to large by params."""
    import torchvision

    all_names = torchvision.models.list_models(module=torchvision.models)
    if names is not None:
        wanted = list(names)
        unknown = sorted(set(wanted) - set(all_names) - {n for n in wanted if n.startswith(TIMM)})
        if unknown:
            raise SystemExit(f"unknown models: {unknown}")
        all_names = wanted
    specs = [ModelSpec(n, size or _default_size(n), _meta_params(n)) for n in all_names]
    return sorted(specs, key=lambda s: (s.params_m, s.name))


def _default_size(name: str) -> int:
    if name.startswith(TIMM):
        from timm.models import get_pretrained_cfg_value

        shape = get_pretrained_cfg_value(name[len(TIMM):], "input_size")
        return int(shape[-1]) if shape else 224
    return DEFAULT_SIZE.get(name, 224)


def build_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised torchvision (or ``timm:``) model in eval mode (same weights for the same seed)."""
    from torchvision.models import get_model

    torch.manual_seed(seed)
    if name.startswith(TIMM):
        import timm

        # num_classes explicit: some timm entries (e.g. eva02 MIM checkpoints) default to a headless 0
        return timm.create_model(name[len(TIMM):], pretrained=False, num_classes=NUM_CLASSES).eval()
    return get_model(name, weights=None, **BUILD_KWARGS.get(name, {})).eval()


def example_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def classifier(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """The final classifier: the last Linear/Conv2d whose output size is the number of classes."""
    found = None
    for name, m in model.named_modules():
        out = getattr(m, "out_features", None) if isinstance(m, torch.nn.Linear) else \
            getattr(m, "out_channels", None) if isinstance(m, torch.nn.Conv2d) else None
        if out == NUM_CLASSES:
            found = (name, m)
    if found is None:
        raise ValueError(f"no layer with {NUM_CLASSES} outputs in {type(model).__name__}")
    return found


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def first_output(y: Any) -> torch.Tensor:
    return y[0] if isinstance(y, (tuple, list)) else y


# ----------------------------------------------------------------------------------------------- errors

class StageTimeout(Exception):
    """A benchmark stage ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None, stage: str):
    """Raise ``StageTimeout`` if the body runs longer than ``seconds`` (SIGALRM; main thread only).

    NOTE: the alarm is delivered between Python bytecodes, so one long C call (a huge conv) overruns it;
    ``zoo.py`` also runs each model in a subprocess with a hard timeout.
    """
    if not seconds:
        yield
        return

    def _raise(signum, frame):
        raise StageTimeout(f"{stage} exceeded {seconds:.0f}s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def error_text(exc: BaseException, limit: int = 300, where: bool = True) -> str:
    """``Type: first line of the message [at file:line in function]``, the form every result file records.

    The location (the innermost frame that raised) is added for errors that are not one of graphprune's
    own, whose messages already say where; it makes a bare ``ZeroDivisionError`` a specific reason.
    """
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {msg[:limit]}"
    if where and graphprune_error_kind(exc) in ("bug", "timeout") and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        path = frame.filename.split("site-packages/")[-1].replace(str(REPO) + "/", "")
        text += f" [at {path}:{frame.lineno} in {frame.name}]"
    return text


def graphprune_error_kind(exc: BaseException) -> str:
    """``trace`` / ``budget`` / ``rewrite`` for graphprune's own errors, ``timeout``, else ``bug``."""
    import graphprune

    kinds = {graphprune.TraceError: "trace", graphprune.BudgetError: "budget",
             graphprune.RewriteError: "rewrite", graphprune.PlanError: "plan", StageTimeout: "timeout"}
    for cls, kind in kinds.items():
        if isinstance(exc, cls):
            return kind
    return "bug"


# ----------------------------------------------------------------------------------------------- processes

def rss_gb(pid: int) -> float:
    """Resident memory of a process in GiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def watch_process(proc: subprocess.Popen, timeout: float, max_rss_gb: float) -> tuple[str, float]:
    """Wait for ``proc``, killing it past ``timeout`` s or ``max_rss_gb``; returns (failure, peak GiB).

    NOTE: the memory cap keeps one model's blow-up from waking the kernel OOM killer on a shared machine.
    """
    deadline, peak = time.monotonic() + timeout, 0.0
    while proc.poll() is None:
        rss = rss_gb(proc.pid)
        peak = max(peak, rss)
        if rss > max_rss_gb or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return (f"worker killed at {rss:.1f} GiB resident memory (limit {max_rss_gb:g} GiB)" if rss > max_rss_gb
                    else f"worker killed after the {timeout:.0f}s per-model limit"), peak
        time.sleep(0.25)
    rc = proc.returncode
    sigkill = " (SIGKILL: the kernel OOM killer)" if rc == -9 else ""
    return (f"worker exited with code {rc}{sigkill}" if rc else ""), peak


# ----------------------------------------------------------------------------------------------- pruners

@dataclass
class TpRun:
    """Torch-Pruning on one model: the pruned model and what it took.

    ``error`` is set when ``step()`` returned but the pruned model fails to run (its MACs count is a
    forward pass); ``seconds`` is then still the prune time.
    """

    model: torch.nn.Module
    seconds: float
    macs_before: float = 0.0  # tp.utils.count_ops_and_params (its own MACs counter)
    macs_after: float = 0.0
    error: str = ""

    @property
    def macs_ratio(self) -> float | None:
        return self.macs_after / self.macs_before if not self.error and self.macs_before else None


def torch_pruning_prune(model: torch.nn.Module, x: torch.Tensor, ratio: float = 0.5,
                        count: bool = True) -> TpRun:
    """Prune ``model`` in place with Torch-Pruning's magnitude pruner (L2, per layer, classifier ignored).

    ``seconds`` covers building the pruner (its dependency graph) and ``step()``; not the MACs counts.
    Exceptions from building the pruner or ``step()`` propagate.
    """
    import torch_pruning as tp

    before = float(tp.utils.count_ops_and_params(model, x)[0]) if count else 0.0
    t = time.perf_counter()
    pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, global_pruning=False,
                                       ignored_layers=[classifier(model)[1]])
    pruner.step()
    run = TpRun(model, time.perf_counter() - t, before)
    if count:
        try:
            run.macs_after = float(tp.utils.count_ops_and_params(model, x)[0])
        except Exception as exc:  # the pruned model does not run
            run.error = f"pruned model fails: {error_text(exc)}"
    return run


def graphprune_seconds(report: Any) -> float:
    """Total prune time graphprune reports (trace + dependency graph + search + rewrite)."""
    return float(sum(report.seconds.values()))


# ----------------------------------------------------------------------------------------------- output

def fmt(value: Any, spec: str = ".3f", none: str = "—") -> str:
    """Format a table cell: numbers with ``spec``, booleans as ✓/✗, None as ``none``."""
    if value is None:
        return none
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are ``str``-ed and ``|`` escaped."""
    clean = lambda c: str(c).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON atomically (write a sibling, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    tmp.replace(path)


def run_rows_merged(out: Path, row_type: type, models: Sequence[str], targets: Sequence[Any],
                    run_one: Callable[[str, Any], Any], render: Callable[[list, dict], str]) -> None:
    """``run_one(model, target)`` for every target and model; after each row, merge it into ``out`` (JSON, keyed by
    the rows' ``model`` and ``target``; rows of earlier runs are kept) and rewrite ``out`` and its ``.md``."""
    rows = [row_type(**r) for r in json.loads(out.read_text())["rows"]] if out.exists() else []
    for target in targets:
        for name in models:
            row = run_one(name, target)
            rows = [r for r in rows if (r.model, r.target) != (row.model, row.target)] + [row]
            env = environment()
            write_json(out, {"env": env, "rows": [dataclasses.asdict(r) for r in rows]})
            out.with_suffix(".md").write_text(render(rows, env))
            print(render([row], env), flush=True)


def environment() -> dict:
    """Library versions and thread count, recorded in every result file."""
    import platform

    import onnxruntime
    import torchvision

    try:  # NOTE: the bench extra installs it; the smoke tests run these scripts with the test extra only
        import torch_pruning
        tp_version = getattr(torch_pruning, "__version__", "?")
    except ImportError:
        tp_version = "not installed"
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "torch_pruning": tp_version, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


@dataclass
class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    seconds: float = 0.0
    _start: float = field(default=0.0, repr=False)

    def __enter__(self) -> "Timer":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
