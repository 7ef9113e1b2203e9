"""Test support: the rewrite oracle and a suite of small models, one per coupling pattern."""
from .oracle import OracleResult, check_rewrite, counted_macs, fraction_keep, random_keep, randomize_
from .patterns import PATTERNS, Pattern

__all__ = ["check_rewrite", "counted_macs", "fraction_keep", "random_keep", "randomize_", "OracleResult", "PATTERNS", "Pattern"]
