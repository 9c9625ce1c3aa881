"""Samplers and schedulers as registered choices: each builds, refuses what it does not take, and
runs a real smoke sweep."""
from __future__ import annotations

import pytest

from dataclasses import replace

import torch
from ray.tune.search.sample import Float

from mlflow_server.options import default_tracking_uri
import sweeper
from sweeper import cli, strategies
from sweeper.strategies import SAMPLERS, SCHEDULERS, Budget, startup_trials
from trainables.errors import ConfigError
from trainables.families import get_family
from trainables.train_loop import apply_optimizer_settings

BUDGET = Budget(trials=8, epochs=6, seed=0, space=get_family("localization").search_space())
SEVERAL = replace(BUDGET, objectives=2)


def test_the_help_names_every_registered_strategy():
    assert list(cli.SAMPLER_NAMES) == list(SAMPLERS) and list(cli.SCHEDULER_NAMES) == list(SCHEDULERS)


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
    with pytest.raises(ConfigError, match="unknown sampler 'bayes'; known: cmaes, gp, nsga2, qmc, random, tpe"):
        strategies.create(SAMPLERS, "bayes", BUDGET, {})
    with pytest.raises(ConfigError, match="scheduler 'median' does not take --brackets; it takes --grace-period"):
        strategies.create(SCHEDULERS, "median", BUDGET, {"brackets": 2})


def test_nsga2_breeds_generations_sized_by_the_budget():
    assert strategies.create(SAMPLERS, "nsga2", SEVERAL, {})._population_size == 4
    assert strategies.create(SAMPLERS, "nsga2", replace(SEVERAL, trials=400), {})._population_size == 50


@pytest.mark.parametrize("registry, name, message", [
    (SAMPLERS, "cmaes", "sampler 'cmaes' optimises one objective; with --objectives use tpe, nsga2"),
    (SCHEDULERS, "pbt", "scheduler 'pbt' ranks trials by one metric"),
])  # fmt: skip
def test_single_objective_strategies_refuse_several_objectives(registry, name, message):
    with pytest.raises(ConfigError, match=message):
        strategies.create(registry, name, SEVERAL, {})


def test_pbt_mutates_the_settings_every_trial_has_within_the_search_space():
    pbt = strategies.create(SCHEDULERS, "pbt", BUDGET, {})
    assert set(pbt._hyperparam_mutations) == {"learning_rate", "weight_decay", "dropout"} and pbt._perturbation_interval == 1
    rate = pbt._hyperparam_mutations["learning_rate"]
    assert isinstance(rate, Float) and (rate.lower, rate.upper) == (1e-4, 3e-3)
    assert list(strategies.create(SCHEDULERS, "pbt", BUDGET, {"mutate": ("batch_size",)})._hyperparam_mutations) == ["batch_size"]
    with pytest.raises(ConfigError, match="--mutate heads: not sampled for every trial by the search space"):
        strategies.create(SCHEDULERS, "pbt", BUDGET, {"mutate": ("heads",)})  # an architecture's parameter only


def test_a_perturbed_learning_rate_wins_over_the_restored_optimizer_and_keeps_the_schedule():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    apply_optimizer_settings(optimizer, schedule, {"learning_rate": 2e-3, "weight_decay": 0.1}, {"learning_rate": 1e-3, "weight_decay": 0.01})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3) and optimizer.param_groups[0]["weight_decay"] == 0.1
    optimizer.step()  # no gradients: nothing moves
    schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("sampler, scheduler, extra", [
    ("random", "hyperband", {}), ("gp", "median", {}), ("qmc", "fifo", {}),
    # PBT needs a population to exploit; the time budget ends the sweep long before its 40 trials
    ("cmaes", "pbt", {"trials": 40, "epochs": 4, "time_budget_s": 20}),
])  # fmt: skip
def test_each_strategy_runs_a_smoke_sweep(ray_session, tmp_path, sampler, scheduler, extra):
    options = {"trials": 3, "epochs": 2, **extra}
    sweep = sweeper.launch("localization", preset="smoke", name="s", sampler=sampler, scheduler=scheduler,
                           storage=str(tmp_path / "ray_results"), tracking_uri=default_tracking_uri(tmp_path), **options)  # fmt: skip
    result = sweep.result
    assert len(sweep.trials) == sum(result.trials_by_status.values()) and result.best_trial_id == sweep.best()[0].trial_id
    assert result.best_trial_id and result.trials_by_status.get("completed", 0) + result.trials_by_status.get("early_stopped", 0) >= 1
    assert sum(result.trials_by_status.values()) <= options["trials"]
    if scheduler == "pbt":
        assert sum(result.trials_by_status.values()) < options["trials"], result.trials_by_status
