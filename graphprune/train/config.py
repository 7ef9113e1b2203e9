"""Training configuration: one frozen dataclass instead of a dozen keyword arguments.

Defaults are the usual CIFAR recipe (SGD, momentum 0.9, Nesterov, weight decay
5e-4, cosine decay from ``lr`` to 0 over all steps). :func:`finetune_config`
gives the recovery recipe used after pruning: a 10× smaller learning rate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["TrainConfig", "finetune_config"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and bookkeeping for :func:`graphprune.train.train`.

    Attributes:
        epochs: passes over the training loader.
        lr: peak learning rate; decays per *step* with a cosine to 0, so even a
            one-epoch fine-tune anneals.
        momentum, nesterov, weight_decay: SGD settings.
        label_smoothing: passed to the cross-entropy term.
        seed: seeds Python, NumPy and torch before the model is touched.
        kd_alpha: weight of the distillation term when a teacher is given
            (``0`` disables KD even with a teacher).
        kd_temperature: softmax temperature ``T`` of the distillation term.
        progress: show a tqdm bar per epoch (main process only).
        eval_every: evaluate on the test loader every this many epochs (and after the last).
        log_path: JSON file rewritten after every epoch (config + per-epoch records).
        checkpoint_path: where the final weights are saved (main process only).
    """

    epochs: int = 10
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    seed: int = 0
    kd_alpha: float = 0.0
    kd_temperature: float = 4.0
    progress: bool = True
    eval_every: int = 1
    log_path: str | None = None
    checkpoint_path: str | None = None

    def __post_init__(self):
        if self.epochs < 0 or self.lr <= 0 or not 0.0 <= self.kd_alpha <= 1.0 or self.kd_temperature <= 0:
            raise ValueError(f"invalid TrainConfig: {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **changes)


def finetune_config(**changes) -> TrainConfig:
    """Recipe for recovering a pruned network: lr 0.01, 3 epochs, KD (if a teacher is given) α=0.5, T=4."""
    base = TrainConfig(epochs=3, lr=0.01, kd_alpha=0.5, kd_temperature=4.0)
    return base.replace(**changes)
