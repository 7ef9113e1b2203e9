"""zoo.md rendering: configuration, summary counts, the per-model table, then every failure with its reason."""
from __future__ import annotations

from common import fmt, markdown_table
from zoo import BUDGET, MASK_RTOL, TP_RATIO, ZooRow

TABLE_HEADERS = ["model", "params M", "GMACs", "gp OK", "TP OK", "gp traced", "gp pruned", "gp output", "gp MACs (own)", "gp MACs (FC)",
                 "gp fwd", "gp mask diff", "gp ONNX", "ORT abs diff", "gp s", "TP MACs (tp)",
                 "TP MACs (FC)", "TP s"]


def _table_row(r: ZooRow) -> list[str]:
    onnx = {"ok": "✓", "failed": "✗", "": "—"}.get(r.gp_onnx, "skip")
    return [r.model + ("" if r.size in (0, 224) else f" ({r.size})"), fmt(r.params_m, ".1f"), fmt(r.dense_gmacs, ".2f"),
            fmt(r.gp_ok), fmt(r.tp_ok), fmt(r.gp_traced), fmt(r.gp_pruned), r.gp_output or "—", fmt(r.gp_macs_ratio),
            fmt(r.gp_macs_ratio_counted), fmt(r.gp_forward_ok), fmt(r.gp_mask_rel_diff, ".1e"), onnx,
            fmt(r.gp_ort_abs_diff, ".1e"), fmt(r.gp_seconds, ".1f"), fmt(r.tp_macs_ratio),
            fmt(r.tp_macs_ratio_counted), fmt(r.tp_seconds, ".1f")]


def _summary(rows: list[ZooRow]) -> list[str]:
    gp = {r.model for r in rows if r.gp_ok}
    tp = {r.model for r in rows if r.tp_ok}
    ran_tp = [r for r in rows if r.tp_ok is not None]
    kinds: dict[str, int] = {}
    for r in rows:
        if not r.gp_ok:
            kinds[r.gp_error_kind or "check"] = kinds.get(r.gp_error_kind or "check", 0) + 1
    onnx_ok = sum(r.gp_onnx == "ok" for r in rows)
    onnx_tried = sum(r.gp_onnx in ("ok", "failed") for r in rows)
    return [f"- models run: **{len(rows)}**",
            f"- graphprune succeeded (pruned, forward OK, mask diff ≤ {MASK_RTOL:g}): **{len(gp)}/{len(rows)}**",
            f"- Torch-Pruning succeeded (forward OK, the dense output shape): **{len(tp)}/{len(ran_tp)}**",
            f"- both: {len(gp & tp)}; graphprune only: {len(gp - tp)}; Torch-Pruning only: {len(tp - gp)}"
            + (f" ({', '.join(sorted(tp - gp))})" if tp - gp else ""),
            f"- graphprune failures by kind: {', '.join(f'{k} {v}' for k, v in sorted(kinds.items())) or 'none'}",
            f"- graphprune models with issues (MACs mismatch, budget miss, mask diff, ONNX): "
            f"{sum(bool(r.gp_issues) for r in rows)}",
            f"- captured by torch.export because fx could not trace: "
            f"{', '.join(sorted(r.model for r in rows if r.gp_front_end == 'export')) or 'none'} "
            f"(of them pruned OK: {sum(r.gp_ok for r in rows if r.gp_front_end == 'export')})",
            f"- ONNX export + ORT check: {onnx_ok}/{onnx_tried} exported and ran "
            f"({sum(r.gp_onnx.startswith('skipped') for r in rows)} skipped as too large)"]


def _failure_lines(rows: list[ZooRow]) -> list[str]:
    lines = ["", "## graphprune failures", ""]
    lines += [f"- **{r.model}** — {r.gp_error_kind or 'check'}: `{r.gp_error or '; '.join(r.gp_issues)}`"
              for r in rows if not r.gp_ok] or ["none"]
    lines += ["", "## graphprune issues on pruned models", ""]
    lines += [f"- **{r.model}** — " + "; ".join(f"`{i}`" for i in r.gp_issues)
              for r in rows if r.gp_issues and r.gp_ok] or ["none"]
    lines += ["", "## Torch-Pruning failures", ""]
    lines += [f"- **{r.model}** — `{r.tp_error}`" for r in rows if r.tp_ok is False] or ["none"]
    return lines


def render(rows: list[ZooRow], env: dict) -> str:
    """zoo.md: configuration, summary counts, the table, then every failure with its reason."""
    head = [f"# Model zoo: graphprune vs Torch-Pruning (budget {BUDGET} of MACs)", "",
            f"graphprune `prune(model, {BUDGET}, strategy='global', importance='l2')`; Torch-Pruning "
            f"`MagnitudePruner(MagnitudeImportance(p=2), pruning_ratio={TP_RATIO}, global_pruning=False)`, "
            "classifier ignored. MACs columns are pruned/dense ratios: *own* = the tool's own counter, "
            "*FC* = `FlopCounterMode` on the pruned module. *mask diff* = max|pruned − masked| / max|masked|. "
            "ONNX *skip* = not exported (pruned model too large or disabled). Seconds: prune time only.", "",
            "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "", "## Summary", ""]
    body = ["", "## Per model (small to large)", "", markdown_table(TABLE_HEADERS, [_table_row(r) for r in rows])]
    return "\n".join(head + _summary(rows) + body + _failure_lines(rows)) + "\n"
