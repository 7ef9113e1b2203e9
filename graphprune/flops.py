"""Independent MAC counting with ``torch.utils.flop_counter.FlopCounterMode``.

Used twice: as the oracle that checks graphprune's own cost model, and at trace time to measure the cost
of ops no rule models (their channels are frozen, so their cost is a constant the budget must include).
FlopCounterMode lacks formulas for CPU flash attention and the fused MultiheadAttention kernel; the first
gets one here, the second is avoided by disabling the MHA fast path while counting.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["counting_macs", "counted_macs"]


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    *batch, q_len, d_qk = query_shape
    s_len, d_v = key_shape[-2], value_shape[-1]
    n = 1
    for b in batch:
        n *= b
    return 2 * n * q_len * s_len * (d_qk + d_v)


@contextlib.contextmanager
def counting_macs() -> Iterator[FlopCounterMode]:
    """Context that counts FLOPs of everything run inside it (``counter.get_total_flops() / 2`` = MACs)."""
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=custom) as counter:
            yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


@contextlib.contextmanager
def _no_requires_grad(model: torch.nn.Module) -> Iterator[None]:
    """Parameters temporarily not requiring grad, flags restored after.

    NOTE: FlopCounterMode's module tracker hooks every module input that requires grad; a parameter
    passed straight into a submodule (timm CaiT's class token) has no grad_fn under no_grad and the
    hook raises "Expected gradient function to be set".
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def counted_macs(model: torch.nn.Module, inputs: tuple) -> float:
    """MACs of one forward of ``model`` on ``inputs``, counted by torch (independent of graphprune)."""
    with torch.no_grad(), _no_requires_grad(model), counting_macs() as counter:
        model(*inputs)
    return counter.get_total_flops() / 2
