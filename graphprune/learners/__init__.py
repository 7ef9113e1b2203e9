"""Training-time learners: learn which units (coupled channel sets) to keep while training.

    >>> from graphprune.learners import BNIsta, GAL, HSN
    >>> plan = BNIsta(epochs=1, lam=1e-3).fit(model, train_set, budget=0.5)

Every learner gates units on the dependency graph (:mod:`.gates`), logs losses, sparsity and MACs per
epoch (:mod:`.log`), and ends with a plan meeting the budget (:mod:`.projection`).
"""
from .base import Export, LearnerConfig, Learner, LearnResult, finalize, recalibrate_from_loader
from .gates import GatedModel, Structure, attach_gates, materialize
from .gal import GAL, Discriminator, GALConfig
from .hsn import HSN, HSNConfig, HyperStructureNetwork
from .ista import BNIsta, BNIstaConfig, NetworkSlimming

__all__ = ["Learner", "LearnerConfig", "LearnResult", "Export", "finalize", "recalibrate_from_loader", "GatedModel", "Structure",
           "attach_gates", "materialize", "BNIsta", "BNIstaConfig", "NetworkSlimming", "GAL", "GALConfig",
           "Discriminator", "HSN", "HSNConfig", "HyperStructureNetwork"]
