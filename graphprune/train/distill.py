"""Knowledge distillation (Hinton et al. 2015) from the unpruned network.

The student minimises a blend of the label loss and the divergence from the
teacher's temperature-softened predictions::

    L = (1 - α) · CE(z_s, y) + α · T² · KL( softmax(z_t / T) ‖ softmax(z_s / T) )

The ``T²`` factor keeps the soft term's gradient magnitude independent of
``T`` (soft-target gradients scale as ``1/T²``). With ``α = 0`` this is plain
cross-entropy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss"]


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    alpha: float = 0.0,
    temperature: float = 4.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy, blended with the KD term when ``teacher_logits`` is given and ``alpha > 0``."""
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None or alpha == 0.0:
        return hard
    soft_student = F.log_softmax(student_logits / temperature, dim=1)
    soft_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    soft = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    return (1.0 - alpha) * hard + alpha * temperature**2 * soft
