"""Activity recognition from wrist accelerometer windows: a family of one's own for attention-sweeper.

Importing this package registers everything: the ``activity`` family, its two architectures
(``conv_net``, the baseline, and ``attention_net``) and the ``alibi`` attention mechanism.
"""
from activity_family import attention, model  # noqa: F401 (registration happens on import)
from activity_family.family import FAMILY

__all__ = ["FAMILY"]
