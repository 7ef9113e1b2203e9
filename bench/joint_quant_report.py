"""Tables and plot of ``bench/joint_quant_models.py``: per-row results and mean ± std over seeds."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from graphprune.files import write_bytes_atomic

METHODS = ("quant-only", "uniform@size", "global@size", "joint", "uniform@latency")


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def summary(report: dict) -> list[dict]:
    """Mean and std over seeds per (budget, method)."""
    out = []
    keys = dict.fromkeys((r["budget"], r["method"]) for r in report["rows"])
    for budget, method in keys:
        rows = [r for r in report["rows"] if r["budget"] == budget and r["method"] == method]
        lat = [r["latency_ratio"] for r in rows if r["latency_ratio"] is not None]
        fp32 = [r["fp32_latency_ratio"] for r in rows if r["fp32_latency_ratio"] is not None]
        acc = np.array([r["acc_int8"] for r in rows])
        out.append({"budget": budget, "method": method, "seeds": len(rows), "acc_mean": float(acc.mean()),
                    "acc_std": float(acc.std()), "size_ratio": float(np.mean([r["size_ratio"] for r in rows])),
                    "kb": float(np.mean([r["onnx_bytes"] for r in rows])) / 1e3,
                    "latency": float(np.mean(lat)) if lat else None, "fp32_latency": float(np.mean(fp32)) if fp32
                    else None, "agree": float(np.min([r["sim_agree"] for r in rows])),
                    "steps": float(np.max([r["sim_max_steps"] for r in rows]))})
    return out


def markdown(report: dict) -> str:
    a = report["args"]
    lines = [f"# Joint pruning + quantisation vs baselines ({report['model']}, Fashion-MNIST)", "",
             f"Command: `{report['command']}`", "",
             f"Fine-tune (every pruned model): KD α=0.5 from the dense model, {a['ft_epochs']} epoch on "
             f"{a['ft_subset']} train images, batch {a['ft_batch']}, lr {a['ft_lr']}, seed = seed. Accuracy: ORT int8 "
             f"on {a['test_subset']} stratified test images (binomial s.e. ≈ "
             f"{100 * (0.2 / a['test_subset']) ** 0.5:.1f} points at 80 %). Joint search: population "
             f"{a['population']}, {a['generations']} generation(s), scored by −KL(dense ‖ candidate) on "
             f"{a['held_out']} held-out train images. Calibration {a['calib_batches']}×64 train images."
             + (" BatchNorm statistics re-estimated on them after pruning (every pruned model and every scored "
                "candidate; `compress(recalibrate_bn=True)`)." if a.get("recalibrate_bn") else ""), "",
             f"Dense fp32: ORT accuracy {report.get('dense_acc', float('nan')):.4f}, ONNX {report.get('dense_bytes')} B"
             + (f", {report['dense_ms']:.3f} ms (ORT CPU, 1 thread, batch 1; load average "
                f"{report['load_average'][0]:.1f}→{report['load_average'][1]:.1f} during timing)"
                if "dense_ms" in report else " (not timed yet)"), "",
             "## Mean ± std over seeds", "",
             "| size budget | method | seeds | acc int8 (ORT) | size ratio (pred.) | int8 file kB | "
             "int8 time / dense fp32 | same model fp32 / dense fp32 | ORT vs sim: min top-1 agree, max steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary(report):
        lines.append(f"| {_fmt(s['budget'], '.2f')} | {s['method']} | {s['seeds']} | {s['acc_mean']:.4f} ± "
                     f"{s['acc_std']:.4f} | {s['size_ratio']:.3f} | {s['kb']:.0f} | {_fmt(s['latency'])} | "
                     f"{_fmt(s['fp32_latency'])} | {s['agree']:.3f}, {s['steps']:.2f} |")
    lines += ["", "## Every row", "",
              "| budget | method | seed | acc int8 | size ratio | BOPs ratio | int8 B | fp32 layers | int8 / dense fp32 "
              "| fp32 / dense fp32 | agree | steps | detail |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {_fmt(r['budget'], '.2f')} | {r['method']} | {r['seed']} | {r['acc_int8']:.4f} | "
                     f"{r['size_ratio']:.3f} | {r['bops_ratio']:.4f} | {r['onnx_bytes']} | {r['fp32_layers']} | "
                     f"{_fmt(r['latency_ratio'])} | {_fmt(r['fp32_latency_ratio'])} | {r['sim_agree']:.3f} | "
                     f"{r['sim_max_steps']:.2f} | {r['detail']} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    stats = summary(report)
    for method in METHODS:
        rows = [s for s in stats if s["method"] == method and s["latency"] is not None]
        if not rows:
            continue
        style = "s" if method == "quant-only" else "o-"
        for ax, x in ((axes[0], [s["kb"] for s in rows]), (axes[1], [s["latency"] for s in rows])):
            ax.errorbar(x, [s["acc_mean"] for s in rows], yerr=[s["acc_std"] for s in rows], fmt=style,
                        capsize=3, label=method)
    axes[0].set_xlabel("int8 ONNX file (kB)")
    axes[1].set_xlabel("measured ORT int8 time / dense fp32 time (1 thread, batch 1)")
    for ax in axes:
        ax.set_ylabel("test accuracy, ORT int8 (mean ± std over seeds)")
        if "dense_acc" in report:
            ax.axhline(report["dense_acc"], color="grey", ls=":", label="dense fp32")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report['model']} (Fashion-MNIST): joint vs prune→quantise vs quantise-only")
    fig.tight_layout()
    with tempfile.NamedTemporaryFile(suffix=".png") as tmp:
        fig.savefig(tmp.name, dpi=110)
        write_bytes_atomic(path, Path(tmp.name).read_bytes())
