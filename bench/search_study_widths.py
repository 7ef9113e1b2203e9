"""Where each allocation method spends its budget: kept fraction of every layer (or stage), from the study rows.

Every study row stores ``widths``: the out-channels of each Conv2d and out-features of each Linear of the pruned
model, in module order.  This script divides them by the dense model's widths and averages over seeds, per
(method, β), optionally pooling layers into named stages (VGG-16: the five conv groups and the hidden Linear):

    python bench/search_study_widths.py bench/results/search_study.json vgg16 > table.md
    python bench/search_study_widths.py bench/results/search_study_vgg16_parts/*.json vgg16
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: VGG-16 stages: layer indices into the widths list (13 convs, then the hidden and the output Linear).
STAGES = {"vgg16": {"conv1-2 (28²)": [0, 1], "conv3-4 (14²)": [2, 3], "conv5-7 (7²)": [4, 5, 6],
                    "conv8-10 (3²)": [7, 8, 9], "conv11-13 (1²)": [10, 11, 12], "fc1": [13]}}


def dense_widths(model_name: str) -> list[int]:
    """Widths of the unpruned registry model, listed the way the study rows list them."""
    import models

    net = models.build(model_name, num_classes=10, in_channels=1)
    return [m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features for m in net.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def kept_fractions(rows: list[dict], model_name: str) -> dict[tuple[str, float], dict[str, float]]:
    """(method, β) -> stage -> kept fraction of that stage's channels, mean over the rows' seeds."""
    dense = np.asarray(dense_widths(model_name), dtype=float)
    stages = STAGES.get(model_name) or {str(i): [i] for i in range(len(dense))}
    cells: dict[tuple[str, float], list[np.ndarray]] = {}
    for r in rows:
        if r["model"] == model_name and "widths" in r:
            cells.setdefault((r["method"], r["budget"]), []).append(np.asarray(r["widths"], dtype=float))
    out = {}
    for key, widths in sorted(cells.items()):
        mean = np.mean(widths, axis=0)
        out[key] = {name: float(mean[idx].sum() / dense[idx].sum()) for name, idx in stages.items()}
    return out


def markdown(fractions: dict, rows: list[dict], model_name: str) -> str:
    """One line per (β, method): kept fraction per stage, and the mean accuracy after fine-tune beside it."""
    acc: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        if r["model"] == model_name:
            acc.setdefault((r["method"], r["budget"]), []).append(r["acc_after"])
    stages = list(next(iter(fractions.values()))) if fractions else []
    lines = ["| β | method | " + " | ".join(stages) + " | acc after FT |", "|---|---|" + "---|" * (len(stages) + 1)]
    for (method, budget), kept in sorted(fractions.items(), key=lambda kv: (kv[0][1], -np.mean(acc[kv[0]]))):
        lines.append(f"| {budget:.2f} | {method} | " + " | ".join(f"{kept[s]:.2f}" for s in stages)
                     + f" | {100 * np.mean(acc[(method, budget)]):.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    files = [a for a in sys.argv[1:] if a.endswith(".json")]  # a merged report or study parts: both hold "rows"
    name = next((a for a in sys.argv[1:] if not a.endswith(".json")), "vgg16")
    all_rows = [r for f in files for r in json.loads(Path(f).read_text())["rows"]]
    print(markdown(kept_fractions(all_rows, name), all_rows, name), end="")
