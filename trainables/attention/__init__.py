"""Sequence mixers behind one interface: ``forward(x (B, N, D), mask (B, N) bool | None) -> (B, N, D)``.

A masked-out token never changes another token's output, so padded sets and sequences can be
batched freely.
"""
from trainables.attention.performer import KERNELS as PERFORMER_KERNELS
from trainables.attention.performer import PerformerAttention

__all__ = ["PERFORMER_KERNELS", "PerformerAttention"]
