"""Warm starts: the finished trials of earlier sweeps of a family, fed to a new sweep's Optuna study
as evaluated points, so its sampler starts where they stopped instead of from random trials.

Each earlier trial enters with the values the sampler would have been told had it run here (its
last reported value of each objective, as Ray's OptunaSearch reports a finished trial) and with the
parameters the new search space still samples. A trial whose parameters no longer fit (a value
outside a new range, an architecture no longer offered) is left out; parameters the new space
adds are simply missing from it, which TPE handles. OptunaSearch accepts evaluated points only
for fixed search spaces, not for define-by-run ones like ours, so the trials go into an Optuna
storage that OptunaSearch then loads (``load_if_exists``), its public way in.
"""
from __future__ import annotations

import logging
from typing import Sequence

import optuna

from search_spaces import SearchSpace
from sweeper.objectives import Objective
from sweeper.sweeps import SweepRecord, rank_trials, read_trials
from trainables.errors import ConfigError
from trainables.families import Family

logger = logging.getLogger(__name__)

STUDY_NAME = "sweep"


def warm_trials(sweeps: Sequence[SweepRecord], family: Family, space: SearchSpace,
                objectives: Sequence[Objective]) -> list[optuna.trial.FrozenTrial]:  # fmt: skip
    """The finished, non-diverged trials of ``sweeps`` that fit ``space``."""
    trials = []
    for record in sweeps:
        name = record.name
        if record.family != family.name:
            raise ConfigError(f"--warm-start {name}: a sweep of {record.family}, not of {family.name}; warm-start from sweeps of the same family")
        finished = rank_trials(read_trials(record, family.validation_metric, family.mode), family.mode)
        fitting = [
            trial for t in finished
            if (trial := _as_optuna(space, t.config, [float(t.history[o.name].iloc[-1]) for o in objectives]))
        ]  # fmt: skip
        logger.info("warm start: %d of the %d finished trials of %s fit the search space", len(fitting), len(finished), name)
        trials += fitting
    return trials


def _as_optuna(space: SearchSpace, config: dict, values: list[float]) -> optuna.trial.FrozenTrial | None:
    distributions = space.distributions(config)
    params = {name: config[name] for name in distributions}
    by_name = {parameter.name: parameter for parameter in space.parameters}
    if not params or not all(by_name[name].contains(value) for name, value in params.items()):
        return None
    return optuna.trial.create_trial(params=params, distributions=distributions, values=values)


def warm_storage(trials: Sequence[optuna.trial.FrozenTrial], modes: Sequence[str]) -> optuna.storages.InMemoryStorage:
    """An Optuna storage holding study STUDY_NAME with ``trials``, for OptunaSearch to load."""
    storage = optuna.storages.InMemoryStorage()
    directions = ["minimize" if mode == "min" else "maximize" for mode in modes]
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, directions=directions)
    study.add_trials(trials)
    return storage
