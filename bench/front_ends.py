"""Prune time of the two front ends on the same models: torch.fx symbolic tracing vs torch.export.

For each model (torchvision, ``weights=None``, 224x224): ``graphprune.prune(model, 0.5, x, front_end=F,
return_result=True)`` for F in ``fx`` and ``export``, ``REPEATS`` times each, interleaved (fx, export, fx, …) so
machine load hits both alike.  Recorded per run: the report's stage seconds (trace = capture, dependency_graph,
search, rewrite) and the wall time of the call; per model: the median of each, the export/fx ratio, and whether both
front ends found the same groups (count and units) and reached the same MACs ratio.

    python bench/front_ends.py                      # resnet50 and vit_b_16, 3 repeats
    python bench/front_ends.py --models resnet18 --repeats 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build_model, environment, markdown_table, write_json  # noqa: E402

FRONT_ENDS = ("fx", "export")
STAGES = ("trace", "dependency_graph", "search", "rewrite")


def _one(name: str, front_end: str) -> dict:
    import torch

    import graphprune

    model, x = build_model(name), torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = graphprune.prune(model, 0.5, x, front_end=front_end, return_result=True)
    wall = time.perf_counter() - t
    return {"wall_s": wall, **{s: res.report.seconds.get(s, 0.0) for s in STAGES},
            "groups": len(res.graph.groups), "units": int(res.graph.n_units), "macs_ratio": res.report.macs_ratio}


def measure(name: str, repeats: int) -> dict:
    runs = {fe: [] for fe in FRONT_ENDS}
    for _ in range(repeats):
        for fe in FRONT_ENDS:
            runs[fe].append(_one(name, fe))
    med = {fe: {k: statistics.median(r[k] for r in runs[fe]) for k in ("wall_s", *STAGES)} for fe in FRONT_ENDS}
    fx, ex = runs["fx"][0], runs["export"][0]
    return {"model": name, "repeats": repeats, "median": med, "runs": runs,
            "export_over_fx_wall": med["export"]["wall_s"] / med["fx"]["wall_s"],
            "export_over_fx_trace": med["export"]["trace"] / max(med["fx"]["trace"], 1e-9),
            "same_groups": (fx["groups"], fx["units"]) == (ex["groups"], ex["units"]),
            "macs_ratio": {"fx": fx["macs_ratio"], "export": ex["macs_ratio"]}}


def render(rows: list[dict], env: dict) -> str:
    headers = ["model", "front end", "wall s", "capture s", "dep. graph s", "search s", "rewrite s", "MACs ratio",
               "groups (units)", "export/fx wall", "export/fx capture", "same groups"]
    table = []
    for r in rows:
        for fe in FRONT_ENDS:
            m = r["median"][fe]
            table.append([r["model"], fe, f"{m['wall_s']:.2f}", f"{m['trace']:.2f}", f"{m['dependency_graph']:.2f}",
                          f"{m['search']:.2f}", f"{m['rewrite']:.2f}", f"{r['macs_ratio'][fe]:.3f}",
                          f"{r['runs'][fe][0]['groups']} ({r['runs'][fe][0]['units']})",
                          f"x{r['export_over_fx_wall']:.1f}" if fe == "export" else "",
                          f"x{r['export_over_fx_trace']:.1f}" if fe == "export" else "",
                          ("✓" if r["same_groups"] else "✗") if fe == "export" else ""])
    head = ["# Prune time: torch.fx vs torch.export front end (budget 0.5 of MACs)", "",
            "`graphprune.prune(model, 0.5, x, front_end=F)`, torchvision `weights=None`, 1x3x224x224, median of "
            f"{rows[0]['repeats'] if rows else 0} interleaved runs. *capture* = the report's trace stage.", "",
            "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    notes = ["", "Where the groups differ: torchvision's ViT calls `nn.MultiheadAttention`, which fx keeps as one "
             "module with its own rule, while torch.export decomposes it into aten ops (linear, view, select on the "
             "packed `in_proj_weight`, sdpa) that the aten rule table couples op by op; both plans pass the oracle "
             "(tests/capture). Timed on 2 CPU cores shared with other jobs: read the ratios, not the seconds."]
    return "\n".join(head + [markdown_table(headers, table)] + notes) + "\n"


def main(argv=None) -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-name", default="front_ends")
    p.add_argument("--render", action="store_true", help="only re-render the .md from the .json")
    args = p.parse_args(argv)
    if args.render:
        import json

        saved = json.loads((RESULTS / f"{args.out_name}.json").read_text())
        (RESULTS / f"{args.out_name}.md").write_text(render(saved["rows"], saved["environment"]))
        return
    torch.set_num_threads(args.threads)
    env = environment()
    rows = []
    for name in args.models:
        rows.append(measure(name, args.repeats))
        r = rows[-1]
        print(f"{name}: fx {r['median']['fx']['wall_s']:.2f}s, export {r['median']['export']['wall_s']:.2f}s "
              f"(x{r['export_over_fx_wall']:.1f}; capture x{r['export_over_fx_trace']:.1f}), "
              f"same groups {r['same_groups']}", flush=True)
        write_json(RESULTS / f"{args.out_name}.json", {"environment": env, "rows": rows})
        (RESULTS / f"{args.out_name}.md").write_text(render(rows, env))


if __name__ == "__main__":
    main()
