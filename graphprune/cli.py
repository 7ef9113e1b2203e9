"""Command line: ``graphprune prune MODEL --budget 0.5 --onnx out.onnx`` and ``graphprune inspect MODEL``.

MODEL is ``torchvision:<name>`` (weights=None), ``timm:<name>`` (pretrained=False; timm must be
installed), ``models:<name>`` (graphprune's bundled reference
networks), ``checkpoint:<file.pt>`` (a trained baseline from ``checkpoints/``) or
``path/to/file.py:factory`` (a function returning an ``nn.Module``).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

__all__ = ["main", "load_model"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like 1,3,224,224, got {text!r}") from None


def load_model(spec: str, input_shape: tuple[int, ...] | None) -> tuple[torch.nn.Module, torch.Tensor]:
    """Resolve a MODEL spec to (model in eval mode, example input)."""
    kind, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"MODEL must be torchvision:<name>, timm:<name>, models:<name>, checkpoint:<file> or "
                         f"file.py:factory, "
                         f"got {spec!r}")
    if kind == "torchvision":
        import torchvision

        kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        default = (1, 3, 299, 299) if name == "inception_v3" else (1, 3, 224, 224)
    elif kind == "timm":
        try:
            import timm
        except ImportError:
            raise SystemExit("timm:<name> needs timm: pip install timm") from None
        model = timm.create_model(name, pretrained=False)
        default = (1, *model.pretrained_cfg.get("input_size", (3, 224, 224)))
    elif kind == "models":
        import models

        model = models.build(name)
        default = models.INPUT_SHAPES.get(name, (1, 3, 32, 32))
    elif kind == "checkpoint":
        from .train import load_checkpoint

        ckpt = load_checkpoint(name)
        model = ckpt.build()
        side = 28 if "28x28" in str(ckpt.meta.get("input", "")) else 32
        default = (1, ckpt.kwargs.get("in_channels", 3), side, side)
    elif kind.endswith(".py"):
        path = Path(kind)
        if not path.exists():
            raise SystemExit(f"no such file: {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        model = getattr(module, name)()
        default = (1, 3, 224, 224)
    else:
        raise SystemExit(f"unknown model source {kind!r}: use torchvision:, timm:, models:, checkpoint: or file.py:")
    torch.manual_seed(0)
    return model.eval(), torch.randn(*(input_shape or default))


def _cmd_prune(args: argparse.Namespace) -> int:
    from .export import save_pruned
    from .export.report import run_job

    model, x = load_model(args.model, args.input_shape)
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    from .budget import Budget

    budget = Budget(args.budget, args.metric)
    pruned, report, plan = run_job(args.model, model, x, budget, onnx_path=args.onnx, threads=args.threads,
                                   strategy=args.strategy, importance=args.importance, round_to=args.round_to,
                                   ignored_layers=args.ignore, leaf_modules=_leaves(args))
    if args.eval:
        report.notes += _accuracy_notes(args, model, pruned, x)
    print(report.table())
    if args.save:
        save_pruned(pruned, args.save, plan)
        print(f"saved {args.save} (+ plan {args.save}.plan.json)")
    if args.report:
        Path(args.report).write_text(report.to_json())
    return 0


def _accuracy_notes(args: argparse.Namespace, dense: torch.nn.Module, pruned: torch.nn.Module,
                    x: torch.Tensor) -> list[str]:
    """Top-1 accuracy of dense and pruned on a test slice, and after an optional short KD fine-tune."""
    from .data import ImageOptions, load_split
    from .train import TrainConfig, evaluate, finetune
    from .train.loop import make_loader

    options = ImageOptions(pad_to_32=x.shape[-1] == 32, in_channels=x.shape[1])
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


def _leaf_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leaf", nargs="*", default=[], help="module names to keep opaque (not traced into)")
    parser.add_argument("--auto-leaf", action="store_true",
                        help="keep every module fx cannot trace opaque (its channels frozen) instead of failing")


def _leaves(args: argparse.Namespace) -> list[str]:
    return list(args.leaf or []) + (["auto"] if args.auto_leaf else [])


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .api import inspect

    model, x = load_model(args.model, args.input_shape)
    graph = inspect(model, x, leaf_modules=_leaves(args))
    print(graph.summary(max_groups=args.max_groups))
    if args.dot:
        Path(args.dot).write_text(graph.to_dot())
        print(f"wrote {args.dot}")
    if args.svg:
        _write_svg(graph.to_dot(), Path(args.svg))
        print(f"wrote {args.svg}")
    return 0


def _write_svg(dot: str, path: Path) -> None:
    import shutil
    import subprocess

    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError("--svg needs Graphviz's 'dot' program (apt-get install graphviz); --dot writes the "
                           "source without it")
    path.write_bytes(subprocess.run([exe, "-Tsvg"], input=dot.encode(), capture_output=True, check=True).stdout)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphprune", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prune", help="prune a model to a budget, export ONNX, print the report")
    pr.add_argument("model")
    pr.add_argument("--budget", type=float, default=0.5, help="fraction of MACs (or --metric params) to keep")
    pr.add_argument("--metric", choices=["macs", "params"], default="macs")
    pr.add_argument("--strategy", choices=["global", "uniform"], default="global")
    pr.add_argument("--importance", choices=["l1", "l2", "bn", "random"], default="l2")
    pr.add_argument("--round-to", type=int, default=1)
    pr.add_argument("--ignore", nargs="*", default=[], help="module names whose channels are kept")
    _leaf_options(pr)
    pr.add_argument("--input-shape", type=_shape)
    pr.add_argument("--weights", help="state_dict file to load before pruning")
    pr.add_argument("--onnx", help="export the pruned model here and check it with ONNX Runtime")
    pr.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads for latency")
    pr.add_argument("--save", help="save the pruned GraphModule (and its plan as JSON beside it)")
    pr.add_argument("--report", help="write the report as JSON")
    pr.add_argument("--eval", choices=["fashion_mnist", "mnist"], help="report accuracy on this test split")
    pr.add_argument("--eval-samples", type=int, default=2000)
    pr.add_argument("--finetune-epochs", type=int, default=0, help="KD fine-tune epochs after pruning")
    pr.add_argument("--finetune-samples", type=int, default=5000)
    pr.set_defaults(fn=_cmd_prune)
    ins = sub.add_parser("inspect", help="print the dependency graph: groups, frozen dims and why")
    ins.add_argument("model")
    ins.add_argument("--input-shape", type=_shape)
    _leaf_options(ins)
    ins.add_argument("--dot", help="write Graphviz DOT here")
    ins.add_argument("--svg", help="render the graph to SVG here (needs Graphviz)")
    ins.add_argument("--max-groups", type=int, default=60)
    ins.set_defaults(fn=_cmd_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, RuntimeError) as exc:  # our errors carry the what and the how-to-fix
        from .trace import TraceError

        hint = "\n(on the command line: --leaf NAME ... or --auto-leaf)" if isinstance(exc, TraceError) else ""
        print(f"graphprune: error: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
