"""What a strategy hands to the rewrite pipeline: which units stay, which structures go, what to fold.

Every strategy ends in a :class:`Handover`: the allocations and searches fill ``keep`` only; the
training-time learners also name residual blocks and concat branches to remove and hand probe batches
for constant folding.  ``passes.rewrite`` runs the one pipeline (``REWRITE_PIPELINE``) on it; a pass
whose field is empty does nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fold_constants import FoldReport
from .remove_block import Block
from .remove_branch import Branch

__all__ = ["Handover"]


@dataclass
class Handover:
    """The rewrite pipeline's input beyond the dependency graph.

    Attributes:
        keep: unit keep mask over the graph being rewritten.
        blocks: residual blocks whose mapping is removed (pass ``remove_blocks``).
        branches: concat operands removed (pass ``remove_branches``); ``keep`` must drop their units.
        fold_batches: probe inputs on which the input columns a reader loses are checked for constancy
            and folded into its bias (pass ``fold_constants``); None: no folding.
        folds: what the fold pass folded, with the new biases: set by the first rewrite of this handover;
            a later rewrite of it (after a learner revives groups) puts the same biases in again instead
            of measuring on a changed network.
        carry_state: give the result the user's names, modes and hooks (pass ``carry_module_state``);
            False for an intermediate model that is traced again (structures removed before a width plan),
            which must not get the removed modules back.
    """

    keep: np.ndarray
    blocks: list[Block] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)
    fold_batches: Any = None
    folds: FoldReport | None = None
    carry_state: bool = True
