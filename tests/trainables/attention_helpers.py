"""Inputs and instruments shared by the per-mechanism attention tests."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def heads_and_mask(
    batch: int, tokens: int, dtype: torch.dtype = torch.float64, heads: int = 2, head_dim: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys, values (B, h, N, d) and a padding mask (B, N) with the hard cases.

    Sequence 0 is padded at the end, sequence 1 has no real token at all, sequence 2 is padded at
    the front (under a causal mask its first queries see no real key) and has a hole.
    """
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, tokens, head_dim, generator=generator, dtype=dtype) for _ in range(3))
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, (tokens + 1) // 2 :] = False
    if batch > 1:
        mask[1] = False
    if batch > 2:
        mask[2, : tokens // 3] = False
        mask[2, tokens // 2] = False
    return q, k, v, mask


class LargestAllocation(TorchDispatchMode):
    """Records the largest storage, in elements, that any tensor operation returns while active.

    Checks a memory claim ("no N x N tensor") exactly and without timing or RSS noise; views count
    with the storage they share, so a view over an existing tensor allocates nothing new.
    """

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.elements = max(self.elements, tensor.untyped_storage().nbytes() // tensor.element_size())
        return out
