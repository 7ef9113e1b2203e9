"""The two commands, ``prune`` and ``inspect``, and what they share: the model, the data a strategy needs.

Each command runs the same stages: check the cheap things (device, output paths, the data a strategy needs),
load the model (seeded), load the data, run the job, then write outputs atomically (``graphprune.files``).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess

import torch

from ..files import write_bytes_atomic, write_text_atomic
from .errors import CliError, one_line
from .models import load_model, load_weights
from .outputs import prepare_outputs
from .parser import strategy_kind

__all__ = ["cmd_prune", "cmd_inspect", "strategy_inputs"]

_NEEDS = {"search": "is a search: it scores candidate plans on held-out data",
          "learner": "is a training-time learner: it learns which channels to keep while training"}


def _check_device(args: argparse.Namespace) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda was asked for, but PyTorch sees no CUDA GPU",
                       "run on a machine with a GPU and a CUDA build of torch, or use --device cpu")


def _check_data_needs(args: argparse.Namespace) -> None:
    """Fail before any work when the strategy or importance needs --data and none was given."""
    from ..importance import CRITERIA

    kind = strategy_kind(args.strategy)
    if args.strategy_option and kind == "allocation":
        raise CliError(f"--strategy {args.strategy} takes no --strategy-option",
                       "options are for the searches and learners; drop --strategy-option")
    if args.data is not None:
        return
    if kind != "allocation":
        raise CliError(f"--strategy {args.strategy} {_NEEDS[kind]}, so it needs data",
                       "add --data fashion_mnist (or mnist); --data-samples N sets how many images")
    if CRITERIA[args.importance].needs_data:
        raise CliError(f"--importance {args.importance} is computed from gradients on data, so it needs data",
                       "add --data fashion_mnist (or mnist), or choose a weight-only criterion such as l2")


def _model(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model (seeded, weights loaded) and example input, on ``--device``."""
    model, x = load_model(args.model, args.input_shape, seed=args.seed, seq=args.seq)
    if args.weights:
        load_weights(model, args.weights, trust=args.trust_file)
    model, x = model.to(args.device), x.to(args.device)
    try:  # NOTE: one forward pass now turns a wrong --input-shape into a clear error before any work
        with torch.no_grad():
            model(x)
    except Exception as exc:
        raise CliError(f"{args.model} does not run on an input of shape {tuple(x.shape)}: {type(exc).__name__}: "
                       f"{one_line(str(exc).split(chr(10))[0], 200)}",
                       "pass the shape the model expects with --input-shape N,C,H,W") from exc
    return model, x


def _image_options(dataset: str, x: torch.Tensor):
    from ..data import ImageOptions

    shape = tuple(x.shape)
    if len(shape) != 4 or shape[-1] != shape[-2] or shape[-1] not in (28, 32):
        raise CliError(f"--data {dataset} gives 28x28 images (32x32 padded), but the example input is {shape}",
                       "use --input-shape 1,C,28,28 or 1,C,32,32 with a model for small images")
    return ImageOptions(pad_to_32=shape[-1] == 32, in_channels=shape[1])


def _batches(dataset, size: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = dataset.tensors
    return [(images[i:i + size].to(device), labels[i:i + size].to(device)) for i in range(0, len(labels), size)]


def strategy_inputs(args: argparse.Namespace, x: torch.Tensor) -> dict:
    """The ``prune`` keywords the chosen strategy and importance need, from ``--data`` subsets.

    Searches get calibration batches (train split) and an ``eval_fn`` on held-out test images (minus the
    cross-entropy: smoother than accuracy on small sets); learners get a training subset; data-driven
    importance gets the calibration batches.
    """
    from ..data import load_split
    from ..evaluate import classification_eval_fn

    if args.data is None:
        return {}
    kind, options = strategy_kind(args.strategy), dict(args.strategy_option)
    image = _image_options(args.data, x)
    train = load_split(args.data, "train", subset=args.data_samples, stratified=True, seed=args.seed, options=image)
    if kind == "learner":
        return {"train_data": train, "search_options": options}
    inputs = {"calib_data": _batches(train, 64, args.device)}
    if kind == "search":
        held_out = load_split(args.data, "test", subset=args.data_samples, options=image)
        inputs["eval_fn"] = classification_eval_fn(_batches(held_out, 256, args.device), metric="neg_loss")
        inputs["search_options"] = options
    return inputs


def _leaves(args: argparse.Namespace) -> list[str]:
    return list(args.leaf or []) + (["auto"] if args.auto_leaf else [])


def budget_of(args: argparse.Namespace):
    """The ``Budget`` the options ask for (``--budget``/``--metric``, ``--latency``, ``--ms``; several at once
    must all hold), the command's default budget when none is given, or None."""
    from ..budget import Budget

    parts = []
    if args.budget is not None or (args.latency is None and args.ms is None and args.default_budget is not None):
        parts.append(Budget(args.budget if args.budget is not None else args.default_budget, args.metric))
    if args.latency is not None:
        parts.append(Budget.latency(args.latency))
    if args.ms is not None:
        if args.latency is not None:
            raise CliError("--latency and --ms both bound the time", "give one of them")
        parts.append(Budget.ms(args.ms))
    if not parts:
        return None
    budget = parts[0]
    for part in parts[1:]:
        budget = budget & part
    return budget


def _target(args: argparse.Namespace, budget):
    """The latency target, only when a latency budget needs one (a MACs budget never measures time)."""
    if budget is None or not budget.needs_latency:
        return None
    from ..latency import Target

    return Target(args.target, getattr(args, "threads", 1), args.batch, args.precision)


def _prune_kw(args: argparse.Namespace, x: torch.Tensor, budget=None) -> dict:
    return dict(strategy=args.strategy, importance=args.importance, round_to=args.round_to,
                ignored_layers=args.ignore, leaf_modules=_leaves(args), front_end=args.front_end,
                target=_target(args, budget), output=getattr(args, "output", "graph"),  # inspect: the plan only
                attention=args.attention, grouped=args.grouped,
                **strategy_inputs(args, x))


def _unknown_option(exc: TypeError, args: argparse.Namespace) -> CliError | None:
    """A TypeError from a search/learner config that got a --strategy-option it does not have."""
    if args.strategy_option and "unexpected keyword argument" in str(exc):
        return CliError(f"--strategy {args.strategy} has no option: {exc}",
                        "check the option names of that strategy's config (graphprune.search / graphprune.learners)")
    return None


def cmd_prune(args: argparse.Namespace) -> int:
    """``graphprune prune``: prune, (export, check, time), print the report, save."""
    from ..export import save_pruned
    from ..export.report import run_job

    _check_device(args)
    _check_data_needs(args)
    prepare_outputs(args)
    model, x = _model(args)
    try:
        budget = budget_of(args)
        pruned, report, plan = run_job(args.model, model, x, budget, onnx_path=args.onnx,
                                       threads=args.threads, **_prune_kw(args, x, budget))
    except TypeError as exc:
        raise _unknown_option(exc, args) or exc
    if args.eval:
        report.notes += _accuracy_notes(args, model, pruned, x)
    print(report.table())
    if args.save:
        save_pruned(pruned, args.save, plan)
        print(f"saved {args.save} (+ plan {args.save}.plan.json)")
    if args.report:
        write_text_atomic(args.report, report.to_json())
        print(f"wrote {args.report}")
    return 0


def _accuracy_notes(args: argparse.Namespace, dense: torch.nn.Module, pruned: torch.nn.Module,
                    x: torch.Tensor) -> list[str]:
    """Top-1 accuracy of dense and pruned on a test slice, and after an optional short KD fine-tune."""
    from ..data import load_split
    from ..train import TrainConfig, evaluate, finetune
    from ..train.loop import make_loader

    options = _image_options(args.eval, x)
    test = make_loader(load_split(args.eval, "test", subset=args.eval_samples, options=options), 256, False)
    notes = [f"{args.eval} test accuracy ({args.eval_samples} images): dense {evaluate(dense, test):.4f}, "
             f"pruned {evaluate(pruned, test):.4f} before fine-tuning"]
    if args.finetune_epochs > 0:
        train = make_loader(load_split(args.eval, "train", subset=args.finetune_samples, stratified=True,
                                       options=options), 128)
        config = TrainConfig(epochs=args.finetune_epochs, lr=0.01, kd_alpha=0.5)
        finetune(pruned, train, config, teacher=dense)
        notes.append(f"after {args.finetune_epochs} epoch(s) of KD fine-tuning on {args.finetune_samples} "
                     f"images: pruned {evaluate(pruned, test):.4f}")
    return notes


def _graph_and_plan(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor):
    """The dependency graph, and with ``--budget`` the plan the chosen strategy makes at that budget."""
    from ..api import inspect, prune

    budget = budget_of(args)
    if budget is None:
        return inspect(model, x, leaf_modules=_leaves(args), front_end=args.front_end), None
    try:
        result = prune(model, budget, x, return_result=True, **_prune_kw(args, x, budget))
    except TypeError as exc:
        raise _unknown_option(exc, args) or exc
    return result.graph, result.plan


def cmd_inspect(args: argparse.Namespace) -> int:
    """``graphprune inspect``: print the summary; write DOT / SVG / HTML views."""
    from ..depgraph.html_view import render_html
    from ..depgraph.views import summary

    _check_device(args)
    if budget_of(args) is not None:
        _check_data_needs(args)
    elif args.strategy != "global" or args.data or args.strategy_option:
        raise CliError("--strategy, --data and --strategy-option choose how a plan is made, and inspect makes "
                       "one only at a --budget", "add --budget (e.g. --budget 0.5), or drop those options")
    if args.svg and shutil.which("dot") is None:
        raise CliError("--svg needs Graphviz's 'dot' program, which is not installed",
                       "apt-get install graphviz, or use --html (no Graphviz needed) or --dot")
    prepare_outputs(args)
    model, x = _model(args)
    graph, plan = _graph_and_plan(args, model, x)
    print(summary(graph, args.max_groups, plan))
    if args.dot:
        write_text_atomic(args.dot, graph.to_dot())
        print(f"wrote {args.dot}")
    if args.svg:
        svg = subprocess.run([shutil.which("dot"), "-Tsvg"], input=graph.to_dot().encode(), capture_output=True,
                             check=True).stdout
        write_bytes_atomic(args.svg, svg)
        print(f"wrote {args.svg}")
    if args.html:
        write_text_atomic(args.html, render_html(graph, plan, title=args.model))
        print(f"wrote {args.html}")
    return 0
