"""Language-model metrics."""
from __future__ import annotations

import math


def bits_per_character(mean_cross_entropy_nats: float) -> float:
    """Bits per character from the mean per-character cross-entropy in nats (natural log)."""
    return mean_cross_entropy_nats / math.log(2)
