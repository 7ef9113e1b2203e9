"""The training loop: ``train``, ``finetune`` and ``evaluate``.

One loop serves single-process and distributed runs. Determinism comes from
two choices:

1. every loader is built by :func:`make_loader` on a ``DistributedSampler``
   (with ``num_replicas=1`` when not distributed), whose epoch-``e`` order is
   ``randperm(n, seed + e)``. Rank ``r`` of ``W`` reads ``order[r::W]``, so
   the union of the ranks' ``k``-th batches is the ``k``-th batch of the
   one-process run with the same *global* batch;
2. gradients are averaged across ranks by DDP, and each rank's loss is a mean
   over its equal share, so one DDP step equals one full-batch step —
   up to float summation order, and except for BatchNorm, whose batch
   statistics stay per rank.

The learning rate follows a per-step cosine from ``lr`` to 0.
"""
from __future__ import annotations

import math
import random
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from ..module_modes import eval_mode

from .checkpoint import save_module, unwrap
from .config import TrainConfig, finetune_config
from .distill import distillation_loss
from .log import EpochRecord, TrainLog

__all__ = ["seed_everything", "make_loader", "evaluate", "train", "finetune", "is_main_process"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                world_size: int = 1, rank: int = 0) -> DataLoader:
    """A loader whose order depends only on ``(seed, epoch)``; ``batch_size`` is per process."""
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)


def device_of(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live; batches are moved there (CPU for a parameterless model)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, max_batches: int | None = None) -> float:
    """Top-1 accuracy of ``model`` over ``loader`` (its first ``max_batches`` batches if given), in eval mode;
    every module's own train/eval flag is restored afterwards."""
    device = device_of(model)
    correct = total = 0
    with eval_mode(model):
        for k, (inputs, labels) in enumerate(loader):
            if max_batches is not None and k >= max_batches:
                break
            inputs, labels = inputs.to(device), labels.to(device)
            correct += (model(inputs).argmax(dim=1) == labels).sum().item()
            total += labels.numel()
    return correct / max(total, 1)


def train(model: nn.Module, train_loader: DataLoader, config: TrainConfig = TrainConfig(),
          test_loader: DataLoader | None = None, teacher: nn.Module | None = None,
          log_meta: dict | None = None) -> TrainLog:
    """Train ``model`` in place (it may be DDP-wrapped) and return the per-epoch log.

    The caller seeds before building the model (see :func:`seed_everything`);
    this function reseeds only the loop so that two runs with the same config see
    the same batches. With ``teacher`` and ``config.kd_alpha > 0`` the loss is
    :func:`~graphprune.train.distill.distillation_loss`.
    """
    seed_everything(config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    total_steps = max(1, config.epochs * len(train_loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps)))
    if teacher is not None:
        if device_of(teacher) != device_of(model):
            raise ValueError(f"teacher is on {device_of(teacher)} but the model trains on {device_of(model)}: "
                             "move the teacher with teacher.to(device) first")
        teacher.eval()
    log = TrainLog(config.to_dict(), config.log_path if is_main_process() else None, dict(log_meta or {}))
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        loss, acc = _train_epoch(model, train_loader, optimizer, schedule, config, teacher, epoch)
        test_acc = _maybe_evaluate(model, test_loader, config, epoch)
        log.append(EpochRecord(epoch, loss, acc, test_acc, lr, time.perf_counter() - start))
    _maybe_save(model, config, log)
    return log


def finetune(pruned: nn.Module, train_loader: DataLoader, config: TrainConfig | None = None,
             teacher: nn.Module | None = None, test_loader: DataLoader | None = None,
             kd_alpha: float | None = None, kd_T: float | None = None) -> TrainLog:
    """Recover a pruned network, optionally distilling from ``teacher`` (the unpruned model).

    ``config`` defaults to :func:`~graphprune.train.config.finetune_config`;
    ``kd_alpha``/``kd_T`` override its distillation weight and temperature.
    """
    config = config or finetune_config()
    if kd_alpha is not None:
        config = config.replace(kd_alpha=kd_alpha)
    if kd_T is not None:
        config = config.replace(kd_temperature=kd_T)
    return train(pruned, train_loader, config, test_loader=test_loader, teacher=teacher)


def _train_epoch(model, loader, optimizer, schedule, config, teacher, epoch) -> tuple[float, float]:
    model.train()
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch - 1)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", leave=False,
               disable=not (config.progress and is_main_process()))
    device = device_of(model)
    for inputs, labels in bar:
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(inputs)
        teacher_logits = _teacher_logits(teacher, inputs, config)
        loss = distillation_loss(logits, labels, teacher_logits, config.kd_alpha,
                                 config.kd_temperature, config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        totals += torch.tensor([loss.item() * len(labels), (logits.argmax(1) == labels).sum().item(), len(labels)],
                               dtype=torch.float64)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    totals = _all_reduce_sum(totals)
    return totals[0].item() / totals[2].item(), totals[1].item() / totals[2].item()


def _teacher_logits(teacher, inputs, config) -> torch.Tensor | None:
    if teacher is None or config.kd_alpha == 0.0:
        return None
    with torch.no_grad():
        return teacher(inputs)


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum across processes when distributed (so logs report global, not per-rank, metrics)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _maybe_evaluate(model, test_loader, config, epoch) -> float | None:
    due = epoch % config.eval_every == 0 or epoch == config.epochs
    if test_loader is None or not due:
        return None
    # NOTE: only rank 0 evaluates (on the unwrapped module, so no collectives run);
    # the others wait at the barrier instead of duplicating the work.
    accuracy = evaluate(unwrap(model), test_loader) if is_main_process() else None
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return accuracy


def _maybe_save(model, config, log) -> None:
    if config.checkpoint_path is None or not is_main_process():
        return
    # NOTE: the whole module is pickled because a pruned network's widths exist nowhere
    # else; registry models can use save_checkpoint (smaller, weights-only) instead.
    save_module(config.checkpoint_path, model)
