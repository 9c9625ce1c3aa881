"""Samplers and schedulers as registered choices: each builds, refuses what it does not take, and
runs a real smoke sweep."""
from __future__ import annotations

import pytest

from sweeper import cli, strategies
from sweeper.strategies import SAMPLERS, SCHEDULERS, Budget, startup_trials
from tests.cli import sweeper
from trainables.errors import ConfigError

BUDGET = Budget(trials=8, epochs=6, seed=0)


def test_the_help_names_every_registered_strategy():
    assert cli.SAMPLER_NAMES.split(", ") == sorted(SAMPLERS, key=cli.SAMPLER_NAMES.index)
    assert set(cli.SCHEDULER_NAMES.split(", ")) == set(SCHEDULERS) and set(cli.SAMPLER_NAMES.split(", ")) == set(SAMPLERS)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_builds(name):
    assert strategies.create(SAMPLERS, name, BUDGET, {}) is not None


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_builds(name):
    assert strategies.create(SCHEDULERS, name, BUDGET, {"grace_period": None}) is not None


def test_tpe_starts_modelling_within_a_small_budget():
    assert [startup_trials(trials) for trials in (4, 8, 12, 32, 100)] == [3, 3, 3, 8, 10]
    assert strategies.create(SAMPLERS, "tpe", BUDGET, {})._n_startup_trials == 3
    assert strategies.create(SAMPLERS, "tpe", BUDGET, {"startup": 5})._n_startup_trials == 5


def test_asha_settings_reach_the_scheduler():
    asha = strategies.create(SCHEDULERS, "asha", BUDGET, {"grace_period": 2, "reduction_factor": 2})
    (bracket,) = asha._brackets
    assert sorted(rung for rung, _ in bracket._rungs) == [2, 4] and asha._max_t == 6  # rungs at grace 2, then x2


def test_unknown_names_and_settings_are_user_errors():
    with pytest.raises(ConfigError, match="unknown sampler 'bayes'; known: gp, qmc, random, tpe"):
        strategies.create(SAMPLERS, "bayes", BUDGET, {})
    with pytest.raises(ConfigError, match="scheduler 'median' does not take --brackets; it takes --grace-period"):
        strategies.create(SCHEDULERS, "median", BUDGET, {"brackets": 2})


@pytest.mark.slow
@pytest.mark.parametrize("sampler, scheduler", [("random", "hyperband"), ("gp", "median"), ("qmc", "fifo")])
def test_each_strategy_runs_a_smoke_sweep(tmp_path, sampler, scheduler):
    completed = sweeper(tmp_path, "launch", "localization", "--preset", "smoke", "--trials", "3", "--epochs", "2",
                        "--sampler", sampler, "--scheduler", scheduler, "--name", "s")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Best trial" in completed.stdout


def test_a_bad_setting_stops_launch_before_anything_starts(tmp_path):
    completed = sweeper(tmp_path, "launch", "localization", "--preset", "smoke", "--scheduler", "median", "--brackets", "2")
    assert completed.returncode == 2 and "scheduler 'median' does not take --brackets" in completed.stderr
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlflow.db").exists()
