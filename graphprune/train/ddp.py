"""Distributed (multi-process, CPU) training through PyTorch's own engine.

Run one process per worker with ``torchrun`` and the gloo backend::

    python -m torch.distributed.run --nproc_per_node 2 -m graphprune.train.ddp \\
        --module pruned.pt --trust-file --teacher checkpoints/resnet56.pt --kd-alpha 0.5 \\
        --dataset fashion_mnist --train-subset 20000 --epochs 3 --batch-size 128 --lr 0.01 \\
        --out finetuned.pt --log-json finetune.json

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) the same command
runs as a single process, which is the reference a distributed run must match:
``--batch-size`` is the *global* batch, split evenly across ranks, and every
rank sees ``DistributedSampler(seed)`` order (see :mod:`.loop`). The model is
wrapped in ``DistributedDataParallel``, which averages gradients after each
backward; rank 0 evaluates, logs and saves.

Files are read safely by default: ``--checkpoint``/``--module``/``--teacher``
load registry checkpoints with ``weights_only=True``; anything else (a pickled
module such as a pruned network, a legacy torch file) needs ``--trust-file``,
because unpickling runs code stored in the file.

:func:`launch` starts the ``torchrun`` command from Python.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import NotACheckpointError, UntrustedFileError, load_checkpoint, load_module
from .config import TrainConfig
from .loop import is_main_process, make_loader, seed_everything, train

__all__ = ["main", "launch", "parse_args", "load_any_model", "load_module"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="graphprune.train.ddp", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="registry name: fresh, seeded initialisation")
    source.add_argument("--checkpoint", help="registry checkpoint (save_checkpoint) to continue from")
    source.add_argument("--module", help="pickled module (save_module), e.g. a pruned network (needs --trust-file)")
    parser.add_argument("--trust-file", action="store_true",
                        help="allow unpickling --checkpoint/--module/--teacher files that are not weights-only "
                             "registry checkpoints; this runs code stored in the file: only for your own files")
    parser.add_argument("--model-kwargs", default="{}", help="JSON kwargs for the --model factory")
    parser.add_argument("--teacher", help="checkpoint or module file to distil from")
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist", "synthetic"])
    parser.add_argument("--train-subset", type=int, help="examples of the train split (synthetic: its size)")
    parser.add_argument("--test-subset", type=int)
    parser.add_argument("--pad-to-32", action="store_true")
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch, split across ranks")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kd-alpha", type=float, default=0.0)
    parser.add_argument("--kd-T", type=float, default=4.0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", help="save the trained module here (rank 0)")
    parser.add_argument("--log-json", help="JSON training log (rank 0)")
    return parser.parse_args(argv)


def load_any_model(path: str, trusted: bool = False) -> nn.Module:
    """A registry checkpoint if the file is one (weights-only read), else, only if ``trusted``, a pickled module.

    Raises:
        UntrustedFileError: the file is not a registry checkpoint and ``trusted`` is False.  Unpickling it
            would run code stored in the file, which a crafted file abuses.
    """
    try:
        checkpoint = load_checkpoint(path)
    except NotACheckpointError as error:
        if not trusted:
            raise UntrustedFileError(
                f"{error}. Loading it as a pickled module would run code stored in the file (a crafted file "
                f"can do anything your user account can). If you wrote this file yourself, pass --trust-file "
                f"(Python: load_any_model(path, trusted=True))") from None
        return load_module(path, trusted=True)
    return checkpoint.build()


def _build_student(args: argparse.Namespace) -> nn.Module:
    if args.model:
        import models

        return models.build(args.model, **json.loads(args.model_kwargs))
    return load_any_model(args.checkpoint or args.module, trusted=args.trust_file)


def _datasets(args: argparse.Namespace):
    from graphprune.data import ImageOptions, load_split, synthetic

    options = ImageOptions(pad_to_32=args.pad_to_32, in_channels=args.in_channels)
    if args.dataset == "synthetic":
        shape = options.image_shape()
        return (synthetic(args.train_subset or 256, shape=shape, noise_seed=1),
                synthetic(args.test_subset or 128, shape=shape, noise_seed=2))
    load = lambda split, n: load_split(args.dataset, split, subset=n, options=options)  # noqa: E731
    return load("train", args.train_subset), load("test", args.test_subset)


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                       kd_alpha=args.kd_alpha, kd_temperature=args.kd_T, progress=not args.no_progress,
                       log_path=args.log_json, checkpoint_path=args.out)


def main(argv: list[str] | None = None) -> float | None:
    """Entry point of every rank; returns rank 0's final test accuracy."""
    args = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("gloo")
    world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    if args.batch_size % world:
        raise ValueError(f"global batch {args.batch_size} is not divisible by {world} processes")
    try:
        seed_everything(args.seed)
        model = _build_student(args)
        teacher = load_any_model(args.teacher, trusted=args.trust_file) if args.teacher else None
        train_set, test_set = _datasets(args)
        train_loader = make_loader(train_set, args.batch_size // world, True, args.seed, world, rank)
        test_loader = make_loader(test_set, 256, shuffle=False)
        if distributed:
            model = DistributedDataParallel(model)
        meta = {"world_size": world, "global_batch": args.batch_size, "argv": sys.argv[1:]}
        log = train(model, train_loader, _config(args), test_loader, teacher, log_meta=meta)
        return log.final_accuracy if is_main_process() else None
    finally:
        if distributed:
            dist.destroy_process_group()


def launch(argv: list[str], nproc: int = 2, timeout: float | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``main(argv)`` on ``nproc`` local CPU processes via ``torchrun`` (raises on failure)."""
    # NOTE: --standalone runs a local rendezvous on a free port, so parallel launches don't collide.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "graphprune.train.ddp", *argv]
    try:
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"torchrun failed ({error.returncode}):\n{error.stderr[-4000:]}") from error


if __name__ == "__main__":
    accuracy = main()
    if accuracy is not None:
        print(f"final test accuracy: {accuracy:.4f}")
