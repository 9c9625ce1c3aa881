"""Several objectives: which metrics a sweep optimises, its Pareto front and the front's hypervolume.

The first objective is always a validation metric of the family (its main one unless a user names
it); the others are costs every trial measures once: batch-1 latency and parameter count, lower
is better. A trial's values are those of its best epoch by the first objective, the checkpoint
that export and promotion use (the costs are the same at every epoch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from optuna._hypervolume import compute_hypervolume  # Optuna's own (WFG); its hypervolume plot uses it

from sweeper.sweeps import TrialResult
from trainables.errors import ConfigError
from trainables.families import Family

COSTS = ("latency_ms_p95", "latency_ms_p50", "param_count")
FRONT_TAG = "sweeper.pareto_front"  # on a trial run: "true"; on the sweep's run: the members' ids
DEFAULT = "default"  # --objectives default: the family's own pair
REFERENCE_MARGIN = 0.1  # the hypervolume's reference point: the worst value, 10% of the range further


@dataclass(frozen=True)
class Objective:
    name: str
    mode: str  # "min" or "max"


LATENCY = Objective("latency_ms_p95", "min")  # what a promotion policy's latency budget bounds


def resolve_objectives(family: Family, names: Sequence[str]) -> tuple[Objective, ...]:
    """The sweep's objectives: () is the family's validation metric alone, ("default",) its pair
    (validation metric, cost); otherwise ``names``, the validation metric put first if missing."""
    main = Objective(family.validation_metric, family.mode)
    if not names:
        return (main,)
    if tuple(names) == (DEFAULT,):
        names = family.objectives
    unknown = [name for name in names if name != main.name and name not in COSTS]
    if unknown:
        raise ConfigError(
            f"--objectives {unknown[0]}: not an objective of {family.name}; choose from {main.name}, {', '.join(COSTS)} "
            f"(or 'default': {','.join(family.objectives)})"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"--objectives {','.join(names)}: an objective is named twice")
    rest = [Objective(name, "min") for name in names if name != main.name]
    return (main, *rest)


def objective_values(trial: TrialResult, objectives: Sequence[Objective]) -> list[float]:
    """The trial's value of each objective at its best epoch (the trial must be usable)."""
    row = trial.history[trial.history["epoch"] == trial.best_epoch].iloc[-1]
    return [float(row[objective.name]) for objective in objectives]


def _minimised(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    signs = np.array([1.0 if objective.mode == "min" else -1.0 for objective in objectives])
    return np.asarray(values, dtype=float).reshape(-1, len(objectives)) * signs


def pareto_mask(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Which rows no other row dominates (at least as good in every objective, better in one)."""
    points = _minimised(values, objectives)
    no_worse = (points[:, None, :] <= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] < points[None, :, :]).any(axis=2)
    return ~(no_worse & better).any(axis=0)


def reference_point(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Each objective's worst value, pushed REFERENCE_MARGIN of its range further, so the extreme
    members of the front add volume too (in the objectives' own units and directions)."""
    values = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    low, high = values.min(axis=0), values.max(axis=0)
    margin = REFERENCE_MARGIN * np.where(high > low, high - low, np.abs(high) + 1e-12)
    return np.array([h + m if o.mode == "min" else l - m for o, l, h, m in zip(objectives, low, high, margin)])


def hypervolume(values: np.ndarray, objectives: Sequence[Objective], reference: np.ndarray) -> float:
    """The volume the points dominate up to ``reference``: larger is a better front. Points
    beyond the reference in some objective add nothing."""
    points, limit = _minimised(values, objectives), _minimised(reference, objectives)[0]
    inside = points[(points < limit).all(axis=1)]
    if not len(inside):
        return 0.0
    return float(compute_hypervolume(inside[pareto_mask(inside, [Objective(o.name, "min") for o in objectives])], limit))


@dataclass(frozen=True)
class Front:
    """A sweep's Pareto front: its members, best first by the first objective, and its hypervolume
    against ``reference`` (the worst values of the sweep's usable trials, pushed out a little)."""

    objectives: tuple[Objective, ...]
    trials: tuple[TrialResult, ...]
    values: np.ndarray  # one row per member, one column per objective
    reference: np.ndarray
    hypervolume: float

    @property
    def trial_ids(self) -> tuple[str, ...]:
        return tuple(trial.trial_id for trial in self.trials)


def sweep_front(ranked: Sequence[TrialResult], objectives: Sequence[Objective]) -> Front | None:
    """The front of a sweep of several objectives; None for one objective or no usable trial."""
    return pareto_front(ranked, objectives) if len(objectives) > 1 and ranked else None


def pareto_front(ranked: Sequence[TrialResult], objectives: Sequence[Objective]) -> Front:
    """The front of the usable trials ``ranked`` (best first by the first objective)."""
    values = np.array([objective_values(trial, objectives) for trial in ranked]).reshape(-1, len(objectives))
    reference = reference_point(values, objectives)
    mask = pareto_mask(values, objectives)
    members = tuple(trial for trial, member in zip(ranked, mask) if member)
    return Front(tuple(objectives), members, values[mask], reference, hypervolume(values, objectives, reference))
