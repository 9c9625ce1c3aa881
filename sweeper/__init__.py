"""attention-sweeper: Ray Tune + Optuna sweeps of attention architectures, tracked in MLflow."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__version__ = "0.1.0"


def load(directory: str | Path) -> nn.Module:
    """An exported model (see ``sweeper export``) in eval mode, after checking its manifest."""
    from sweeper.model_folder import load as load_folder  # torch and the registry only when used

    return load_folder(directory)
