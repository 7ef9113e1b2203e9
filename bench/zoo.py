"""Model-zoo coverage: graphprune vs Torch-Pruning on every torchvision classification model.

For each model (``weights=None``, 224×224 input, 299 for inception_v3), at budget 0.5 of dense MACs:

1. **graphprune** ``prune(model, 0.5, strategy="global", importance="l2")`` after ``randomize_`` (so
   BatchNorm statistics are non-trivial).  Recorded: traced, pruned, achieved MACs ratio by graphprune's
   cost model *and* by ``FlopCounterMode`` on the pruned module, forward OK, mask equivalence
   (``max|pruned(x) - masked(x)| / max|masked(x)|`` against ``passes.masked_model``), ONNX export +
   ONNX Runtime max abs diff, prune seconds, and the error (graphprune's own ``TraceError`` /
   ``BudgetError`` / ``RewriteError``, or anything else, which counts as a bug).
2. **Torch-Pruning 1.6** ``MagnitudePruner`` (L2, ``pruning_ratio=0.5``, per layer, classifier
   ignored) on a fresh copy of the same model: succeeded (forward OK, 1000 logits), MACs ratio by its
   own counter and by ``FlopCounterMode``, seconds, error.

A model's graphprune run *succeeds* when it pruned, the forward works and the mask-equivalence diff is
≤ 1e-4; MACs mismatches and budget misses are listed as issues.  Each model runs in its own subprocess
(hard timeout) with soft per-tool time limits; rows are merged into ``bench/results/zoo.json`` and
``zoo.md`` after every model, so a partial run is useful and ``--resume`` continues it.

    python bench/zoo.py                                   # everything, small to large (hours on 2 cores)
    python bench/zoo.py --models resnet18 vit_b_16        # a few
    python bench/zoo.py --limit 10 --resume               # the next 10 not yet in zoo.json
    python bench/zoo.py --report                          # re-render zoo.md from zoo.json
    python bench/zoo.py --out-name zoo_timm --models timm:resnest14d timm:rexnet_100   # timm models
    python bench/zoo.py --family hf                       # the 12 Hugging Face tiny configs -> zoo_hf.*

``hf:NAME`` models (``bench/zoo_hf.py``): transformers tiny configs with random weights; graphprune captures them
with torch.export (fx cannot trace transformers 5.x); Torch-Pruning gets its documented ``num_heads`` recipe.
A forward is OK when the pruned model returns the dense model's output shape (1000 logits for image classifiers).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ModelSpec, watch_process, write_json, zoo_specs  # noqa: E402
from zoo_build import build, output_shape  # noqa: E402
from zoo_hf import HF, first  # noqa: E402

BUDGET = 0.5
TP_RATIO = 0.5
MASK_RTOL = 1e-4
MACS_RTOL = 1e-6
JSON_PATH, MD_PATH = RESULTS / "zoo.json", RESULTS / "zoo.md"


@dataclass
class ZooRow:
    """Everything measured on one model; ``None`` means the stage was not reached."""

    model: str
    size: int
    params_m: float
    stage: str = "start"  # the last stage entered (names where a killed worker stopped)
    dense_gmacs: float | None = None  # FlopCounterMode, dense model
    # graphprune
    gp_traced: bool | None = None
    gp_front_end: str = ""  # "fx", or "export" when fx could not trace (graphprune.capture)
    gp_pruned: bool = False
    gp_output: str = ""  # report.output_kind: "module" (the user's own class) or "graph" (GraphModule)
    gp_groups: int | None = None
    gp_groups_pruned: int | None = None
    gp_frozen: int | None = None
    gp_macs_ratio: float | None = None  # graphprune's cost model
    gp_macs_ratio_counted: float | None = None  # FlopCounterMode on the pruned module / dense
    gp_macs_match: bool | None = None  # cost model == FlopCounterMode on the pruned module
    gp_params_ratio: float | None = None
    gp_forward_ok: bool | None = None
    gp_mask_rel_diff: float | None = None
    gp_onnx: str = ""  # "ok", "failed", "skipped (...)"
    gp_ort_abs_diff: float | None = None
    gp_ort_rel_diff: float | None = None
    gp_seconds: float | None = None
    gp_error_kind: str = ""  # trace / budget / rewrite / plan / timeout / bug / forward / onnx
    gp_error: str = ""
    gp_issues: list[str] = field(default_factory=list)
    # Torch-Pruning
    tp_ok: bool | None = None
    tp_macs_ratio: float | None = None  # tp.utils.count_ops_and_params
    tp_macs_ratio_counted: float | None = None  # FlopCounterMode
    tp_seconds: float | None = None
    tp_error: str = ""
    peak_rss_gb: float | None = None  # the worker's peak resident memory (sampled every 0.25 s)
    output_shape: list[int] | None = None  # the dense model's first output

    @property
    def gp_ok(self) -> bool:
        return bool(self.gp_pruned and self.gp_forward_ok and self.gp_mask_rel_diff is not None
                    and self.gp_mask_rel_diff <= MASK_RTOL)

    @classmethod
    def from_dict(cls, d: dict) -> "ZooRow":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ------------------------------------------------------------------------------------------- the worker

@dataclass
class WorkerConfig:
    gp_limit: float = 1800.0  # soft limit (s) for graphprune's prune + checks
    tp_limit: float = 1200.0  # soft limit (s) for Torch-Pruning
    onnx_max_params: float = 300e6  # skip ONNX export when the pruned model has more parameters
    skip_tp: bool = False
    skip_onnx: bool = False
    auto_leaf: bool = False  # graphprune with leaf_modules="auto" (modules fx cannot trace kept opaque)


def _save(row: ZooRow, out: Path, stage: str | None = None) -> None:
    if stage:
        row.stage = stage
    write_json(out, asdict(row))


def _run_graphprune(row: ZooRow, spec: ModelSpec, cfg: WorkerConfig, out: Path) -> None:
    """Prune with graphprune and check the result; fills the ``gp_*`` fields of ``row``."""
    import graphprune
    from common import error_text, graphprune_error_kind, graphprune_seconds, n_params, time_limit
    from graphprune.testing import counted_macs

    model, x = build(spec)
    _save(row, out, "dense")
    dense = counted_macs(model, (x,))
    row.dense_gmacs = dense / 1e9
    row.output_shape = list(output_shape(model, x))
    _save(row, out, "graphprune.prune")
    try:
        with time_limit(cfg.gp_limit, "graphprune"):
            res = graphprune.prune(model, BUDGET, example_inputs=x, strategy="global", importance="l2",
                                   return_result=True, leaf_modules="auto" if cfg.auto_leaf else ())
            row.gp_traced, row.gp_pruned, row.gp_front_end = True, True, res.report.front_end
            row.gp_seconds = graphprune_seconds(res.report)
            row.gp_macs_ratio, row.gp_params_ratio = res.report.macs_ratio, res.report.params_ratio
            row.gp_groups, row.gp_groups_pruned = res.report.groups_total, res.report.groups_pruned
            row.gp_frozen = len(res.graph.frozen)
            row.gp_output = getattr(res.report, "output_kind", "")
            _save(row, out, "graphprune.forward")
            _check_pruned(row, res, model, x, dense, out)
    except Exception as exc:  # record every failure with its reason
        row.gp_error_kind = row.gp_error_kind or graphprune_error_kind(exc)
        row.gp_error = row.gp_error or error_text(exc)
        if row.gp_traced is None:
            row.gp_traced = _traces(model, x) if row.gp_error_kind != "trace" else False
        return
    if cfg.skip_onnx:
        row.gp_onnx = "skipped (--skip-onnx)"
    elif n_params(res.model) > cfg.onnx_max_params:
        row.gp_onnx = f"skipped (> {cfg.onnx_max_params / 1e6:.0f}M params)"
    else:
        _save(row, out, "graphprune.onnx")
        _check_onnx(row, res.model, x, cfg)


def _traces(model, x) -> bool | None:
    """Whether graphprune can trace ``model`` at all (asked only after a non-trace failure)."""
    import graphprune

    try:
        graphprune.inspect(model, x)
        return True
    except graphprune.TraceError:
        return False
    except Exception:
        return None


def _check_pruned(row: ZooRow, res, model, x, dense: float, out: Path) -> None:
    """Forward, independent MACs count, and mask equivalence of a pruned model."""
    import torch

    from graphprune.passes import masked_model
    from graphprune.testing import counted_macs

    pruned = res.model.eval()
    try:
        with torch.no_grad():
            y = first(pruned(x))
        row.gp_forward_ok = list(y.shape) == row.output_shape
    except Exception:
        row.gp_forward_ok, row.gp_error_kind = False, "forward"
        raise
    _save(row, out, "graphprune.counted_macs")
    counted = counted_macs(pruned, (x,))
    row.gp_macs_ratio_counted = counted / dense
    row.gp_macs_match = abs(counted - res.report.macs) <= MACS_RTOL * max(counted, 1.0)
    if not row.gp_macs_match:
        row.gp_issues.append(f"MACs mismatch: cost model {res.report.macs:.4g} vs FlopCounterMode {counted:.4g}")
    if res.report.macs_ratio > BUDGET + 1e-9:
        row.gp_issues.append(f"budget missed: {res.report.macs_ratio:.4f} > {BUDGET}")
    _save(row, out, "graphprune.mask")
    reference = masked_model(res.graph, res.plan.keep_mask(res.graph)).eval()
    with torch.no_grad():
        want = first(reference(x))
    row.gp_mask_rel_diff = float((y - want).abs().max() / want.abs().max().clamp_min(1e-12))
    if row.gp_mask_rel_diff > MASK_RTOL:
        row.gp_issues.append(f"mask diff {row.gp_mask_rel_diff:.2e} > {MASK_RTOL:g}")


def _check_onnx(row: ZooRow, pruned, x, cfg: WorkerConfig) -> None:
    from common import error_text, time_limit
    from graphprune.export import check_onnx, export_onnx

    try:
        with tempfile.TemporaryDirectory() as tmp, time_limit(cfg.gp_limit, "onnx"):
            check = check_onnx(pruned, (x,), export_onnx(pruned, (x,), Path(tmp) / f"{row.model}.onnx"))
        row.gp_onnx, row.gp_ort_abs_diff, row.gp_ort_rel_diff = "ok", check.max_abs_diff, check.max_rel_diff
    except Exception as exc:
        row.gp_onnx = "failed"
        row.gp_issues.append(f"ONNX: {error_text(exc, 200)}")


def _run_torch_pruning(row: ZooRow, spec: ModelSpec, cfg: WorkerConfig, dense: float | None) -> None:
    """Prune a fresh copy with Torch-Pruning; fills the ``tp_*`` fields of ``row``."""
    import torch

    from common import error_text, time_limit, torch_pruning_prune
    from graphprune.testing import counted_macs

    model, x = build(spec)
    want = row.output_shape or list(output_shape(model, x))
    try:
        with time_limit(cfg.tp_limit, "torch-pruning"):
            if spec.name.startswith(HF):
                import zoo_hf

                run = zoo_hf.torch_pruning_prune(model, x, TP_RATIO)
                row.tp_seconds = run.seconds
            else:
                run = torch_pruning_prune(model, x, TP_RATIO)
                row.tp_seconds, row.tp_macs_ratio = run.seconds, run.macs_ratio
            if run.error:
                raise RuntimeError(run.error)
            with torch.no_grad():
                y = first(model.eval()(x))
            if list(y.shape) != want:
                raise RuntimeError(f"output shape {tuple(y.shape)} != {tuple(want)}")
            row.tp_ok = True
            if dense:
                row.tp_macs_ratio_counted = counted_macs(model, (x,)) / dense
    except Exception as exc:
        row.tp_ok, row.tp_error = False, str(exc) if row.tp_seconds is not None else error_text(exc)


def run_worker(spec: ModelSpec, cfg: WorkerConfig, out: Path) -> ZooRow:
    """Measure one model (both tools), saving the row to ``out`` after every stage."""
    row = ZooRow(spec.name, spec.size, spec.params_m)
    _run_graphprune(row, spec, cfg, out)
    if not cfg.skip_tp:
        _save(row, out, "torch-pruning")
        dense = row.dense_gmacs * 1e9 if row.dense_gmacs else None
        _run_torch_pruning(row, spec, cfg, dense)
    _save(row, out, "done")
    return row


# ------------------------------------------------------------------------------------------- the driver

def _spawn(spec: ModelSpec, args: argparse.Namespace, log_dir: Path) -> ZooRow:
    """Run one model's worker in a subprocess; a killed or crashed worker leaves a partial row."""
    out = log_dir / f"{spec.name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--worker", spec.name, "--size", str(spec.size), "--out", str(out),
           "--gp-limit", str(args.gp_limit), "--tp-limit", str(args.tp_limit),
           "--onnx-max-params", str(args.onnx_max_params)]
    cmd += ["--skip-tp"] * args.skip_tp + ["--skip-onnx"] * args.skip_onnx + ["--auto-leaf"] * args.auto_leaf
    with open(log_dir / f"{spec.name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        failure, peak = watch_process(proc, args.timeout, args.max_rss_gb)
    row = ZooRow.from_dict(json.loads(out.read_text())) if out.exists() else \
        ZooRow(spec.name, spec.size, spec.params_m)
    row.peak_rss_gb = round(peak, 2)
    if failure:
        _blame(row, f"{failure} during stage '{row.stage}'")
    return row


def _blame(row: ZooRow, failure: str) -> None:
    """Attach a worker-level failure to the tool that was running."""
    if row.stage.startswith("torch-pruning"):
        row.tp_ok, row.tp_error = False, row.tp_error or failure
    elif row.stage.startswith("graphprune.onnx"):
        row.gp_onnx = "failed"
        row.gp_issues.append(failure)
    else:
        kind = "memory" if "memory" in failure or "OOM" in failure else "timeout" if "limit" in failure else "bug"
        row.gp_error_kind = row.gp_error_kind or kind
        row.gp_error = row.gp_error or failure
        row.gp_pruned = row.gp_pruned and row.gp_mask_rel_diff is not None


def load_rows() -> dict[str, ZooRow]:
    if not JSON_PATH.exists():
        return {}
    return {r["model"]: ZooRow.from_dict(r) for r in json.loads(JSON_PATH.read_text())["rows"]}


def save_rows(rows: dict[str, ZooRow], env: dict) -> None:
    ordered = sorted(rows.values(), key=lambda r: (r.params_m, r.model))
    write_json(JSON_PATH, {"budget": BUDGET, "tp_ratio": TP_RATIO, "mask_rtol": MASK_RTOL, "environment": env,
                           "rows": [asdict(r) | {"gp_ok": r.gp_ok} for r in ordered]})
    from zoo_report import render

    MD_PATH.write_text(render(ordered, env))


def _specs(names, size) -> list[ModelSpec]:
    """Specs for torchvision / ``timm:`` names (``common.zoo_specs``) and ``hf:`` names (``zoo_hf``; size 0)."""
    import zoo_hf

    hf = [n for n in names or () if n.startswith(HF)]
    rest = [n for n in names or () if not n.startswith(HF)]
    specs = zoo_specs(None if names is None else rest, size) if rest or names is None else []
    return specs + [ModelSpec(n, 0, zoo_hf.params_m(n)) for n in hf]


def drive(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from common import environment

    specs = _specs(args.models, args.size)
    rows = load_rows()
    if args.resume:
        specs = [s for s in specs if s.name not in rows]
    specs = specs[: args.limit] if args.limit else specs
    env = environment()
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(specs, unit="model", dynamic_ncols=True)
    for spec in bar:
        bar.set_postfix_str(f"{spec.name} ({spec.params_m:.1f}M)", refresh=False)
        row = _spawn(spec, args, log_dir)
        rows[spec.name] = row
        save_rows(rows, env)
        tp = "ok" if row.tp_ok else f"FAIL {row.tp_error[:60]}"
        gp = "ok" if row.gp_ok else f"FAIL {row.gp_error_kind}: {row.gp_error[:60]}"
        tqdm.write(f"{spec.name:24s} gp {gp} | tp {tp}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", help="only these models (torchvision names, or timm:NAME)")
    p.add_argument("--family", choices=["hf"], help="every model of a family: hf = the 12 Hugging Face tiny "
                   "configs of bench/zoo_hf.py (results in zoo_hf.* unless --out-name)")
    p.add_argument("--out-name", default="zoo", help="results file stem under bench/results (e.g. zoo_timm)")
    p.add_argument("--size", type=int, help="input size override (default 224; 299 for inception_v3)")
    p.add_argument("--limit", type=int, help="at most this many models")
    p.add_argument("--resume", action="store_true", help="skip models already in zoo.json")
    p.add_argument("--report", action="store_true", help="only re-render zoo.md from zoo.json")
    p.add_argument("--timeout", type=float, default=5400.0, help="hard per-model limit (s)")
    p.add_argument("--gp-limit", type=float, default=1800.0, help="soft limit for graphprune (s)")
    p.add_argument("--tp-limit", type=float, default=1200.0, help="soft limit for Torch-Pruning (s)")
    p.add_argument("--onnx-max-params", type=float, default=300e6, help="skip ONNX above this many params")
    p.add_argument("--max-rss-gb", type=float, default=14.0, help="kill a worker above this resident memory")
    p.add_argument("--skip-tp", action="store_true")
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--auto-leaf", action="store_true", help="graphprune with leaf_modules='auto'")
    p.add_argument("--log-dir", default=str(Path(tempfile.gettempdir()) / "graphprune_zoo"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    global JSON_PATH, MD_PATH
    args = parse_args(argv)
    if args.family == "hf":
        import zoo_hf

        args.models = [HF + n for n in zoo_hf.NAMES] + list(args.models or [])
        args.out_name = "zoo_hf" if args.out_name == "zoo" else args.out_name
    JSON_PATH, MD_PATH = RESULTS / f"{args.out_name}.json", RESULTS / f"{args.out_name}.md"
    if args.worker:
        from common import _meta_params

        params = __import__("zoo_hf").params_m(args.worker) if args.worker.startswith(HF) else _meta_params(args.worker)
        spec = ModelSpec(args.worker, args.size, params)
        cfg = WorkerConfig(args.gp_limit, args.tp_limit, args.onnx_max_params, args.skip_tp, args.skip_onnx,
                           args.auto_leaf)
        run_worker(spec, cfg, Path(args.out))
    elif args.report:
        from common import environment

        rows = load_rows()
        env = json.loads(JSON_PATH.read_text()).get("environment", {}) if rows else environment()
        save_rows(rows, env)
    else:
        drive(args)


if __name__ == "__main__":
    main()
