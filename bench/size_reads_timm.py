"""timm attention that reshapes with a width read from the input (``B, N, C = x.shape … .reshape(B, N, C)``).

Before the size-read fix, graphprune coupled the residual width (where ``C`` is read) with the attention's inner
width (where it is used), so the two could only shrink together.  For each model (small configs, random weights):
groups and prunable units of the dependency graph, then ``graphprune.prune`` at 0.5 MACs (exact widths) held to
the oracle (pruned == the original with the removed channels zeroed).

    python bench/size_reads_timm.py --label ws-sizes     # merges a column into bench/results/size_reads_timm.*

Run it once per code version (``PYTHONPATH`` pointing at each checkout) with different labels to compare.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, error_text, markdown_table, write_json  # noqa: E402

import graphprune  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.testing import check_rewrite, randomize_  # noqa: E402

MODELS = {  # name: (image size, create_model overrides)
    "cait_xxs24_224": (32, dict(img_size=32, depth=2)),
    "pvt_v2_b0": (64, {}),
    "xcit_nano_12_p16_224": (32, dict(img_size=32, depth=2)),
    "beit_base_patch16_224": (32, dict(img_size=32, depth=1, embed_dim=64, num_heads=4)),
    "eva02_tiny_patch14_224": (28, dict(img_size=28, depth=2)),
}
OUT = RESULTS / "size_reads_timm"


def measure(name: str, size: int, overrides: dict) -> dict:
    import timm

    torch.manual_seed(0)
    model = randomize_(timm.create_model(name, pretrained=False, **overrides).eval())
    x = torch.randn(1, 3, size, size)
    row: dict = {"model": name}
    try:
        t = time.perf_counter()
        res = graphprune.prune(model, 0.5, x, round_to=1, return_result=True, front_end="fx")
        row["prune_s"] = time.perf_counter() - t
        row["groups"], row["units"] = len(res.graph.groups), int(res.graph.n_units)
        r = check_rewrite(model, x, keep=res.plan.keep_mask(res.graph), graph=res.graph)
        row["macs_ratio"], row["oracle_diff"] = r.planned_macs / res.graph.cost().macs, r.max_diff
    except Exception as exc:  # a budget the frozen widths cannot reach is a result too
        row["error"] = error_text(exc, limit=160, where=False)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="column name for this code version")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    path = OUT.with_suffix(".json")
    payload = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    payload["runs"][args.label] = {"environment": environment(),
                                   "rows": [measure(n, s, o) for n, (s, o) in MODELS.items()]}
    write_json(path, payload)
    headers, lines = ["model"], {n: [n] for n in MODELS}
    for label, run in payload["runs"].items():
        headers += [f"{label}: groups / units", f"{label}: 0.5 MACs (oracle diff)"]
        for row in run["rows"]:
            lines[row["model"]] += [f"{row.get('groups', '—')} / {row.get('units', '—')}",
                                    row.get("error") or f"{row['macs_ratio']:.3f} ({row['oracle_diff']:.1e})"]
    table = markdown_table(headers, lines.values())
    intro = ("Groups / prunable units of the dependency graph, and `prune(..., 0.5, round_to=1)` MACs ratio with the "
             "oracle's max diff (pruned vs original with removed channels zeroed); `python bench/size_reads_timm.py`.")
    write_text_atomic(OUT.with_suffix(".md"), f"# Size reads on timm attention\n\n{intro}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
