"""Training harness: train baselines, fine-tune pruned networks (optionally with KD).

    >>> from graphprune.train import TrainConfig, make_loader, train, evaluate
    >>> log = train(model, make_loader(train_set, 128), TrainConfig(epochs=5), test_loader)
    >>> log.final_accuracy, log.total_seconds

Distributed fine-tuning on CPU: ``python -m torch.distributed.run --nproc_per_node 2
-m graphprune.train.ddp ...`` (see :mod:`graphprune.train.ddp`).
"""
from .checkpoint import Checkpoint, load_checkpoint, load_module, save_checkpoint, save_module, unwrap
from .config import TrainConfig, finetune_config
from .distill import distillation_loss
from .log import EpochRecord, TrainLog
from .loop import device_of, evaluate, finetune, is_main_process, make_loader, seed_everything, train

__all__ = [
    "TrainConfig",
    "finetune_config",
    "train",
    "finetune",
    "evaluate",
    "device_of",
    "make_loader",
    "seed_everything",
    "is_main_process",
    "distillation_loss",
    "EpochRecord",
    "TrainLog",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "save_module",
    "load_module",
    "unwrap",
]
