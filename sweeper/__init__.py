"""attention-sweeper: Ray Tune + Optuna sweeps of attention architectures, tracked in MLflow.

    import sweeper
    sweep = sweeper.launch("localization", preset="quick")   # or sweeper.open("NAME")
    sweep.trials                                              # a pandas DataFrame, one row per trial
    outcome = sweep.promote()                                 # the verdict against the baselines
    sweep.export("exports/", top_k=3)
    model = sweeper.load("exports/rank1-<trial>")

Ray, torch and MLflow are imported on first use, so ``import sweeper`` and ``sweeper --help`` stay fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from sweeper.api import Sweep

__version__ = "0.1.0"
__all__ = ["Sweep", "launch", "list_sweeps", "load", "open"]


def launch(family: str, **options: Any) -> Sweep:
    """Run a sweep of ``family`` to its end; see :func:`sweeper.api.launch`."""
    from sweeper import api

    return api.launch(family, **options)


def open(name: str, storage: str = "ray_results") -> Sweep:  # noqa: A001 (the API's verb, as in io.open)
    """The sweep ``name`` in ``storage``; see :class:`sweeper.api.Sweep`."""
    from sweeper import api

    return api.open(name, storage)


def list_sweeps(storage: str = "ray_results") -> list[str]:
    """The names of the sweeps recorded in ``storage``."""
    from sweeper import api

    return api.list_sweeps(storage)


def load(directory: str | Path) -> nn.Module:
    """An exported model (see ``sweeper export``) in eval mode, after checking its manifest."""
    from sweeper.model_folder import load as load_folder  # torch and the registry only when used

    return load_folder(directory)


def __getattr__(name: str) -> Any:
    if name == "Sweep":
        from sweeper.api import Sweep

        return Sweep
    raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
