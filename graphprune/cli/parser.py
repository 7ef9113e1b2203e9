"""The argument parser: options, their defaults and help, and the checks argparse can do on one value.

Strategy and importance choices are read from the library's registries (``strategies.REGISTRY``,
``importance.CRITERIA``), so a new row there is a new choice here.  Parse errors become one-line :class:`CliError` (see ``errors.py``).
"""
from __future__ import annotations

import argparse
import ast

from .compress_cmd import add_compress_parser
from .errors import CliError, did_you_mean

__all__ = ["build_parser", "strategy_kind", "strategy_kinds", "MODEL_HELP"]

MODEL_HELP = """\
MODEL is one of:
  torchvision:NAME       a torchvision model, randomly initialised (weights=None), e.g. torchvision:resnet18
  timm:NAME              a timm model (pretrained=False; needs timm), e.g. timm:resnet18
  models:NAME            a bundled reference network: {bundled}
  checkpoint:FILE        a trained bundled network saved by graphprune.train.save_checkpoint,
                         e.g. checkpoint:checkpoints/resnet56.pt
  hf:CONFIG              a Hugging Face transformers model from a local config.json (or its directory), random
                         weights, no download; class from its 'architectures'; input_ids of --seq tokens,
                         or pixel_values of its image_size (pruned by torch.export: the result is a GraphModule)
  path/file.py:FACTORY   EXECUTES path/file.py as Python and calls FACTORY() to build the model:
                         only use files you trust
Models are built after torch.manual_seed(--seed), so random initialisations repeat run to run.
--weights FILE then loads a state_dict into the model.

examples:
  graphprune prune torchvision:resnet18 --budget 0.5 --onnx out/r18.onnx --input-shape 1,3,224,224
  graphprune prune models:lenet5 --strategy sensitivity --data fashion_mnist
  graphprune inspect models:resnet20 --html graph.html --budget 0.5
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help (unless unset); descriptions and epilogs printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line CliErrors instead of usage + exit."""

    def error(self, message: str):  # noqa: D102 (argparse API)
        raise CliError(message, f"see {self.prog} --help")


def _registries() -> dict[str, dict]:
    """The table of strategies (``graphprune.strategies.REGISTRY``) by kind: kind -> {name: row}."""
    from ..strategies import KINDS, REGISTRY

    return {kind: {name: row for name, row in REGISTRY.items() if row.kind == kind} for kind in KINDS}


def strategy_kinds() -> dict[str, str]:
    """Every strategy name -> ``"allocation"`` (data-free), ``"search"`` or ``"learner"``."""
    return {name: kind for kind, table in _registries().items() for name in table}


def strategy_kind(name: str) -> str:
    return strategy_kinds()[name]


def _choice(label: str, known: list[str]):
    def parse(text: str) -> str:
        if text not in known:
            raise argparse.ArgumentTypeError(f"unknown {label} {text!r}; {did_you_mean(text, known)}"
                                             f"choose from {', '.join(known)}")
        return text
    parse.__name__ = label
    return parse


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like 1,3,224,224, got {text!r}") from None
    if any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input shape {text!r} has a non-positive size; every dim must be >= 1")
    return dims


def _number(text: str, kind: type, ok, wrong: str, bad: str):
    """``kind(text)`` when ``ok`` holds; else an argparse error (``wrong``: not a number; ``bad``: out of range)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{wrong}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(bad.format(text))
    return value


def _budget(text: str) -> float:
    return _number(text, float, lambda v: 0.0 < v <= 1.0, "budget must be a number in (0, 1]",
                   "budget must be a fraction in (0, 1] of the dense model's cost to keep, got {}; "
                   "e.g. 0.5 keeps half the MACs")


def _positive(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "expected a whole number", "expected a number >= 1, got {}")


def _round_to(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def _milliseconds(text: str) -> float:
    return _number(text, float, lambda v: 0.0 < v < float("inf"), "expected a time in milliseconds",
                   "expected a positive time in milliseconds, got {}")


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"strategy option must look like KEY=VALUE (e.g. episodes=8), got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare word is a string


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="the model to load (see MODEL above)")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W",
                   help="example input shape (default: the model's usual input)")
    p.add_argument("--seq", type=_positive, metavar="L", help="hf: text models: tokens in the example input_ids "
                   "(default 16)")
    p.add_argument("--seed", type=int, default=0, help="seeds model initialisation, example input and data subsets")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs while pruning")
    p.add_argument("--weights", metavar="FILE", help="a state_dict to load into the model, read safely "
                   "(torch.load weights_only=True)")
    p.add_argument("--trust-file", action="store_true", help="allow --weights to be a full pickle (e.g. a saved "
                   "module); RISK: unpickling runs any code the file contains, so only for files you made")
    p.add_argument("--leaf", nargs="*", default=[], metavar="NAME", help="module names to keep opaque "
                   "(not traced into; their channels are frozen)")
    p.add_argument("--auto-leaf", action="store_true",
                   help="keep every module fx cannot trace opaque (its channels frozen) instead of failing")
    p.add_argument("--front-end", choices=["auto", "fx", "export", "record"], default="auto",
                   help="how the model is captured: torch.fx, then torch.export, then recording a run on the "
                   "example input (auto), or only one of them")
    p.add_argument("--attention", choices=["auto", "heads", "head_dim", "both"], default="auto",
                   help="what one prunable unit of a multi-head attention is: whole heads, one offset in every "
                   "head, heads then offsets, or auto (heads when every attention has >= 8 heads)")
    p.add_argument("--grouped", choices=["auto", "groups", "group_width"], default="auto",
                   help="what one prunable unit of a grouped convolution is: a whole group (the group count "
                   "shrinks), one offset in every group (the width per group shrinks), or auto (whole groups "
                   "where a conv has >= 4 groups)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _strategy_options(p: argparse.ArgumentParser, budget_default: float | None) -> None:
    from ..importance import CRITERIA

    kinds = strategy_kinds()
    budget_help = ("fraction of MACs (or --metric params) to keep; 0.5 when neither this nor --latency/--ms "
                   "is given" if budget_default is not None else
                   "also compute a plan at this fraction of MACs and show the kept channels per group")
    p.add_argument("--budget", type=_budget, default=None, help=budget_help)
    p.set_defaults(default_budget=budget_default)
    p.add_argument("--metric", choices=["macs", "params"], default="macs", help="what --budget counts")
    by_kind = {k: [n for n, v in kinds.items() if v == k] for k in ("allocation", "search", "learner")}
    p.add_argument("--strategy", type=_choice("strategy", list(kinds)), choices=list(kinds), default="global",
                   metavar="STRATEGY", help=f"data-free allocation: {', '.join(by_kind['allocation'])}; "
                   f"searches (need --data): {', '.join(by_kind['search'])}; training-time learners "
                   f"(need --data): {', '.join(by_kind['learner'])}")
    p.add_argument("--strategy-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the search or learner, e.g. episodes=8 (rl) or epochs=2 (learners)")
    needs = [n for n, c in CRITERIA.items() if c.needs_data]
    p.add_argument("--importance", type=_choice("importance", list(CRITERIA)), choices=list(CRITERIA),
                   default="l2", metavar="CRITERION",
                   help=f"channel importance: {', '.join(CRITERIA)} ({', '.join(needs)} need --data)")
    p.add_argument("--round-to", type=_round_to, default="auto", metavar="auto|N",
                   help="kept channel counts: 'auto' picks widths the target runtime likes (its measured latency "
                   "steps under a latency budget, else multiples of 16, finer only where the budget needs them); "
                   "N: multiples of N; 1: exact")
    p.add_argument("--latency", type=_budget, metavar="R", help="latency budget: keep at most this fraction of the "
                   "dense model's time measured on --target (with an explicit --budget: both must hold)")
    p.add_argument("--ms", type=_milliseconds, metavar="T", help="latency budget in milliseconds on --target")
    p.add_argument("--target", choices=["ort-cpu", "openvino-cpu", "torch-cpu", "torch-cuda"], default="ort-cpu",
                   help="runtime the latency is measured on (with --threads, --batch, --precision)")
    p.add_argument("--batch", type=_positive, default=1, help="batch size the latency is measured at")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="inference precision of --target (OpenVINO's own CPU default is bf16 on AMX machines)")
    p.add_argument("--ignore", nargs="*", default=[], metavar="NAME", help="module names whose channels are kept")
    p.add_argument("--data", choices=["fashion_mnist", "mnist"], help="offline dataset for searches (calibration "
                   "batches from train, held-out scoring on test), learners (train subset) and data-driven importance")
    p.add_argument("--data-samples", type=_positive, default=512, help="images per --data subset")


def _prune_parser(sub, model_help: str) -> None:
    p = sub.add_parser("prune", help="prune a model to a budget, export ONNX, print the report",
                       description="Prune MODEL to --budget, optionally export/check ONNX, save, report.",
                       epilog=model_help, formatter_class=_Formatter)
    _model_options(p)
    _strategy_options(p, budget_default=0.5)
    p.add_argument("--onnx", metavar="FILE", help="export the pruned model here and check it with ONNX Runtime")
    p.add_argument("--threads", type=_positive, default=1, help="ONNX Runtime intra-op threads for latency")
    p.add_argument("--save", metavar="FILE", help="save the pruned model (and its plan as FILE.plan.json)")
    p.add_argument("--output", choices=["auto", "module", "graph"], default="auto",
                   help="what prune returns: the model's own class with smaller layers when its code bakes no "
                   "pruned size, else the torch.fx GraphModule (auto); module: the own class or an error naming "
                   "the code that bakes a size; graph: always the GraphModule")
    p.add_argument("--report", metavar="FILE", help="write the report as JSON")
    p.add_argument("--eval", choices=["fashion_mnist", "mnist"], help="report accuracy on this test split")
    p.add_argument("--eval-samples", type=_positive, default=2000, help="test images for --eval")
    p.add_argument("--finetune-epochs", type=int, default=0, help="KD fine-tune epochs after pruning (with --eval)")
    p.add_argument("--finetune-samples", type=_positive, default=5000, help="training images for fine-tuning")


def _inspect_parser(sub, model_help: str) -> None:
    p = sub.add_parser("inspect", help="print the dependency graph: groups, frozen dims and why",
                       description="Print MODEL's dependency graph; optionally write DOT, SVG or an HTML page.",
                       epilog=model_help, formatter_class=_Formatter)
    _model_options(p)
    _strategy_options(p, budget_default=None)
    p.add_argument("--dot", metavar="FILE", help="write Graphviz DOT here")
    p.add_argument("--svg", metavar="FILE", help="render the graph to SVG here (needs Graphviz's dot)")
    p.add_argument("--html", metavar="FILE", help="write one self-contained HTML page of the graph here "
                   "(with --budget: the kept fraction of every group)")
    p.add_argument("--max-groups", type=_positive, default=60, help="groups listed in the text summary")


def _model_help() -> str:
    """MODEL_HELP with the bundled network names read from the zoo's registry."""
    try:
        import models
    except ImportError:  # NOTE: an install without the zoo still parses; models:NAME then fails clearly
        return MODEL_HELP.format(bundled="(the bundled zoo is not installed)")
    return MODEL_HELP.format(bundled=", ".join(models.REGISTRY))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    import torch

    model_help = _model_help()

    p = _Parser(prog="graphprune", formatter_class=_Formatter, epilog=model_help,
                description="graphprune: graph-based structured pruning for PyTorch (trace, couple, search, "
                            "rewrite, export).")
    p.add_argument("--version", action="version", version=f"graphprune {__version__} (torch {torch.__version__})")
    sub = p.add_subparsers(dest="command", required=True, metavar="{prune,inspect,compress}")
    _prune_parser(sub, model_help)
    _inspect_parser(sub, model_help)
    add_compress_parser(sub, model_help, _model_options, _Formatter)
    return p
