"""``graphprune compress``: prune and quantise a model to a size / BOPs / measured-latency budget, write the int8
ONNX file.

    graphprune compress checkpoint:checkpoints/resnet20.pt --budget 0.15 --data fashion_mnist --out r20.int8.onnx
    graphprune compress checkpoint:checkpoints/resnet20.pt --quantize mixed --data fashion_mnist --plan plan.json
    graphprune compress checkpoint:checkpoints/resnet20.pt --apply-plan plan.json --data fashion_mnist
    graphprune compress models:lenet5 --quantize int4 --int4-block-size 32 --data fashion_mnist --budget 0.2
    graphprune compress checkpoint:checkpoints/resnet20.pt --latency 0.4 --threads 1 --batch 1 --data fashion_mnist

Calibration batches come from ``--data``'s train split; the joint search (``--quantize mixed`` or
``--strategy joint``) scores candidates on held-out test images (minus the cross-entropy, as ``prune``'s
searches do).  The parser pieces shared with ``prune`` are handed in by ``parser.build_parser``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from .errors import CliError

__all__ = ["add_compress_parser", "cmd_compress"]


def _size_budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget must be a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"budget must be a fraction in (0, 1] of the dense fp32 model's size "
                                         f"(or BOPs), got {text}; e.g. 0.15 (int8 alone gives about 0.25)")
    return value


def add_compress_parser(sub, model_help: str, model_options: Callable, formatter: type) -> None:
    """The ``compress`` subcommand; ``model_options`` adds MODEL and the options every command shares."""
    from ..importance import CRITERIA

    p = sub.add_parser("compress", help="prune + int8-quantise a model to a size, BOPs or measured-latency budget (ONNX Runtime)",
                       description="Prune and quantise MODEL so its size (or BOPs) is at most --budget of the "
                                   "dense fp32 model's; write the int8 QDQ ONNX file and the plan.",
                       epilog=model_help, formatter_class=formatter)
    model_options(p)
    p.add_argument("--budget", type=_size_budget, default=None, help="fraction of the dense fp32 size (or --metric "
                   "bops) to keep (0.15 when no --latency / --ms is given)")
    p.add_argument("--latency", type=_size_budget, metavar="R", help="measured-latency budget instead: at most this "
                   "fraction of the dense fp32 model's ONNX Runtime CPU time (int8 file timed, re-planned until met)")
    p.add_argument("--ms", type=float, metavar="T", help="measured-latency budget in milliseconds (ORT CPU)")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads the latency budget is measured with")
    p.add_argument("--batch", type=int, default=1, help="batch size the latency budget is measured at")
    p.add_argument("--metric", choices=["size", "bops"], default="size", help="what --budget counts: bytes of "
                   "weights, or MACs x weight bits x activation bits")
    p.add_argument("--quantize", choices=["int8", "mixed", "int4"], default="int8", help="every Conv/Linear int8; "
                   "fp32 / int8 (int4 for Linear) per layer chosen by the joint search; or int4: every Linear "
                   "weight-only int4 (ORT MatMulNBits), every Conv int8")
    p.add_argument("--int4-block-size", type=int, default=32, metavar="N", help="weights per int4 scale (a power "
                   "of two >= 16)")
    p.add_argument("--int4-symmetric", action="store_true", help="int4 blocks without zero points (ORT's "
                   "default is asymmetric)")
    p.add_argument("--int4-accuracy-level", type=int, choices=[0, 4], default=0, help="MatMulNBits compute: 0 fp32 "
                   "activations, 4 int8 activations per block (faster on VNNI CPUs)")
    p.add_argument("--strategy", choices=["auto", "global", "uniform", "joint"], default="auto",
                   help="channel allocation: auto = joint with --quantize mixed, else global")
    p.add_argument("--importance", choices=[n for n, c in CRITERIA.items() if not c.needs_data], default="l2",
                   help="channel importance (also orders the channels the joint search drops)")
    p.add_argument("--strategy-option", action="append", default=[], metavar="KEY=INT",
                   help="joint search setting, e.g. population=8 or generations=3")
    p.add_argument("--data", choices=["fashion_mnist", "mnist"], required=True,
                   help="offline dataset: calibration batches (train) and, for the joint search, held-out scoring")
    p.add_argument("--data-samples", type=int, default=512, help="images per --data subset")
    p.add_argument("--out", default="compressed.int8.onnx", metavar="FILE",
                   help="the int8 ONNX file (the pruned fp32 file is written beside it as FILE.fp32.onnx)")
    p.add_argument("--plan", metavar="FILE", help="save the plan (channels + bit-widths) as JSON here")
    p.add_argument("--apply-plan", metavar="FILE", help="re-apply a saved plan instead of searching")
    p.add_argument("--recalibrate-bn", action="store_true", help="re-estimate BatchNorm statistics on the calibration "
                   "images after pruning (every scored candidate and the result; saved in the plan)")
    p.add_argument("--time-rounds", type=int, default=10, help="time the int8 and pruned fp32 files on ONNX Runtime "
                   "(CPU, 1 thread, batch 1) in this many interleaved rounds; 0: do not time")


def _options(pairs: list[str]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise CliError(f"--strategy-option {pair!r} is not KEY=INT", "e.g. --strategy-option population=8")
        out[key.strip()] = int(value)
    return out


def _model(args: argparse.Namespace):
    from .models import load_model, load_weights

    model, x = load_model(args.model, args.input_shape, seed=args.seed)
    if args.weights:
        load_weights(model, args.weights, trust=args.trust_file)
    return model, x


def _batches(dataset, size: int) -> list:
    images, labels = dataset.tensors
    return [(images[i:i + size], labels[i:i + size]) for i in range(0, len(labels), size)]


def _budget(args: argparse.Namespace, quant_budget: type) -> tuple:
    """(QuantBudget, latency Target or None) from --budget/--metric, --latency or --ms (one kind at a time)."""
    from ..latency.model import Target

    timed = [name for name in ("latency", "ms") if getattr(args, name) is not None]
    if len(timed) > 1 or (timed and args.budget is not None):
        given = (["--budget"] if args.budget is not None else []) + [f"--{n}" for n in timed]
        raise CliError(f"{' and '.join(given)} are different budgets; compress meets one", "give one of them")
    if args.threads < 1 or args.batch < 1:
        raise CliError(f"--threads and --batch must be >= 1, got {args.threads}, {args.batch}", "e.g. --threads 1")
    if args.latency is not None:
        return quant_budget.latency(args.latency), Target("ort-cpu", threads=args.threads, batch=args.batch)
    if args.ms is not None:
        if not args.ms > 0:
            raise CliError(f"--ms must be a positive number of milliseconds, got {args.ms}", "e.g. --ms 0.8")
        return quant_budget.ms(args.ms), Target("ort-cpu", threads=args.threads, batch=args.batch)
    ratio = args.budget if args.budget is not None else 0.15
    return (quant_budget.size(ratio) if args.metric == "size" else quant_budget.bops(ratio)), None


def cmd_compress(args: argparse.Namespace) -> int:
    """Load, compress (or replay a plan), print the report, save the plan."""
    from ..data import load_split
    from ..evaluate import classification_eval_fn
    from ..plan import PlanError
    from ..quantize import BitPlan, QuantBudget, apply_bitplan, compress
    from ..quantize.int4 import Int4Scheme
    from ..quantize.joint import JointConfig
    from ..data import ImageOptions

    if args.device != "cpu":
        raise CliError("compress runs on the CPU (ONNX Runtime CPU quantisation)", "drop --device")
    options = _options(args.strategy_option)
    try:
        int4 = Int4Scheme(args.int4_block_size, args.int4_symmetric, args.int4_accuracy_level)
    except PlanError as error:
        raise CliError(str(error), "e.g. --int4-block-size 32") from None
    unknown = sorted(set(options) - set(JointConfig.__dataclass_fields__))
    if unknown:
        raise CliError(f"unknown --strategy-option {unknown}", f"known: {sorted(JointConfig.__dataclass_fields__)}")
    model, x = _model(args)
    if x.dim() != 4 or x.shape[-1] not in (28, 32):
        raise CliError(f"--data {args.data} gives 28x28 images (32x32 padded), but the example input is "
                       f"{tuple(x.shape)}", "use --input-shape 1,C,28,28 with a model for small images")
    image = ImageOptions(pad_to_32=x.shape[-1] == 32, in_channels=x.shape[1])
    train = load_split(args.data, "train", subset=args.data_samples, stratified=True, seed=args.seed, options=image)
    calib = _batches(train, 64)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.apply_plan:
        result = apply_bitplan(model, BitPlan.load(args.apply_plan), x, calib_data=calib, out=args.out)
    else:
        joint = args.strategy == "joint" or (args.strategy == "auto" and args.quantize == "mixed")
        eval_fn = None
        if joint:
            held_out = load_split(args.data, "test", subset=args.data_samples, options=image)
            eval_fn = classification_eval_fn(_batches(held_out, 256), metric="neg_loss")
        budget, target = _budget(args, QuantBudget)
        result = compress(model, budget, x, quantize=args.quantize, calib_data=calib, eval_fn=eval_fn,
                          strategy=args.strategy, importance=args.importance, out=args.out,
                          search_options=options or None, time_rounds=args.time_rounds, leaf_modules=args.leaf,
                          front_end=args.front_end, recalibrate_bn=args.recalibrate_bn, int4=int4, target=target)
    print(result.report)
    print(f"wrote {result.onnx.int8_path} ({result.onnx.int8_bytes} B) and {result.onnx.fp32_path}")
    if args.plan:
        result.bitplan.save(args.plan)
        print(f"wrote plan {args.plan}")
    return 0
