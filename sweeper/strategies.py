"""Search strategies: which configs to try next (samplers, from Optuna) and which trials to stop
early (schedulers, from Ray Tune). Each is a small registered factory of the sweep's budget whose
keyword-only arguments are its settings, as Optuna does with its samplers, so a new strategy is a
new function here and the command line checks settings against the chosen one's signature.

Which combinations work:
- One objective: every sampler with every scheduler. The sampler proposes a trial, the scheduler
  may stop it at an epoch boundary; a stopped trial reports its last values to the sampler like
  any other. With ``pbt`` the sampler proposes only the starting population: PBT then copies the
  weights and config of good trials into bad ones and perturbs the mutated settings, so the
  sampler is told results of configs that changed under it (``random`` is the honest pairing).
- Several objectives (``--objectives``): samplers ``tpe``, ``nsga2``, ``random``, ``qmc`` and ``gp``
  (Optuna's multi-objective ones); ``cmaes`` refuses. Schedulers ``fifo`` (the default then) and
  ``asha``, ``hyperband``, ``median``, which rank trials by the first objective only, so they may stop
  a fast but slow-learning trial that would have joined the front; ``pbt`` refuses (it exploits
  by one metric and changes a trial's config, which a front of configs cannot hold).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, PopulationBasedTraining, TrialScheduler

from search_spaces import Parameter, SearchSpace
from trainables.errors import ConfigError
from trainables.registry import Registry, UnknownNameError

SAMPLERS: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("sampler")
SCHEDULERS: Registry[Callable[..., TrialScheduler]] = Registry("scheduler")


@dataclass(frozen=True)
class Budget:
    """What a strategy may size itself by."""

    trials: int
    epochs: int
    seed: int
    space: SearchSpace | None = None  # what pbt mutates within
    objectives: int = 1  # how many metrics the sampler optimises at once


def startup_trials(trials: int) -> int:
    """Random trials before a model-based sampler starts modelling: a quarter of the budget, 3 to 10.
    Optuna's fixed 10 made every sweep of 10 trials or fewer (the quick presets) a seeded random search."""
    return int(min(10, max(3, round(trials / 4))))


def _early_epochs(budget: Budget) -> int:
    return max(1, budget.epochs // 3)


@SAMPLERS.register("tpe")
def tpe(budget: Budget, *, startup: int | None = None) -> optuna.samplers.TPESampler:
    """Multivariate TPE with groups, so each architecture's conditional parameters are modelled
    together; constant liar, so trials running at once are not all drawn near the same point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=budget.seed, n_startup_trials=startup or startup_trials(budget.trials), multivariate=True, group=True, constant_liar=True
        )


@SAMPLERS.register("nsga2")
def nsga2(budget: Budget, *, population: int | None = None) -> optuna.samplers.NSGAIISampler:
    """The genetic algorithm NSGA-II: generations of ``population`` trials (default: a quarter of the
    trials, 4 to 50), each bred from the best fronts of the last. Made for several objectives."""
    return optuna.samplers.NSGAIISampler(seed=budget.seed, population_size=population or int(min(50, max(4, round(budget.trials / 4)))))


@SAMPLERS.register("cmaes")
def cmaes(budget: Budget, *, startup: int | None = None) -> optuna.samplers.CmaEsSampler:
    """CMA-ES over the numeric parameters all trials share (categorical and conditional ones are
    drawn at random: CMA-ES needs a fixed, continuous space). One objective only."""
    if budget.objectives > 1:
        raise ConfigError("sampler 'cmaes' optimises one objective; with --objectives use tpe, nsga2, gp, random or qmc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.CmaEsSampler(seed=budget.seed, n_startup_trials=startup or startup_trials(budget.trials), warn_independent_sampling=False)


@SAMPLERS.register("random")
def random(budget: Budget) -> optuna.samplers.RandomSampler:
    """Uniform random search, seeded: the reference every other sampler must beat."""
    return optuna.samplers.RandomSampler(seed=budget.seed)


@SAMPLERS.register("gp")
def gp(budget: Budget, *, startup: int | None = None) -> optuna.samplers.GPSampler:
    """Gaussian-process Bayesian optimisation over the parameters all trials share (the conditional
    ones of an architecture are drawn at random: a GP needs a fixed space)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=budget.seed, n_startup_trials=startup or startup_trials(budget.trials))


@SAMPLERS.register("qmc")
def qmc(budget: Budget) -> optuna.samplers.QMCSampler:
    """Scrambled Sobol points: random search that covers the space more evenly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(seed=budget.seed, scramble=True)


@SCHEDULERS.register("asha")
def asha(budget: Budget, *, grace_period: int | None = None, reduction_factor: float = 3, brackets: int = 1) -> ASHAScheduler:
    """Asynchronous successive halving: at each rung keep the best 1 / reduction_factor."""
    return ASHAScheduler(max_t=budget.epochs, grace_period=grace_period or _early_epochs(budget), reduction_factor=reduction_factor, brackets=brackets)


@SCHEDULERS.register("hyperband")
def hyperband(budget: Budget, *, reduction_factor: float = 3, brackets: int = 3) -> ASHAScheduler:
    """Asynchronous Hyperband: brackets of successive halving from aggressive to gentle, so a
    slow starter is not always cut at the first rung. Ray's synchronous HyperBandScheduler pauses
    trials; a sweep of it left a finished trial recorded as paused in the saved experiment state
    (seen with Ray 2.60), which resume would then run again."""
    return ASHAScheduler(max_t=budget.epochs, grace_period=1, reduction_factor=reduction_factor, brackets=brackets)


@SCHEDULERS.register("median")
def median(budget: Budget, *, grace_period: int | None = None) -> MedianStoppingRule:
    """Stop a trial whose best so far is worse than the median of the others' at the same epoch."""
    return MedianStoppingRule(time_attr="training_iteration", grace_period=grace_period or _early_epochs(budget), min_samples_required=3)


@SCHEDULERS.register("pbt")
def pbt(budget: Budget, *, perturbation_interval: int | None = None, mutate: tuple[str, ...] | None = None) -> PopulationBasedTraining:
    """Population-based training: every ``perturbation_interval`` epochs (default: a quarter of the
    epochs) a trial in the bottom quarter takes the weights and config of one in the top quarter
    and perturbs the ``mutate`` settings (default: learning_rate, weight_decay and dropout: the ones
    that change no weight's shape), drawn from the search space's ranges."""
    if budget.objectives > 1:
        raise ConfigError("scheduler 'pbt' ranks trials by one metric and changes their configs; with --objectives use fifo or asha")
    assert budget.space is not None, "pbt mutates within the search space: pass it in the budget"
    # PBT perturbs a value every trial has: not a constant, not a parameter of some architectures only.
    by_name = {parameter.name: parameter for parameter in budget.space.parameters if parameter.type != "fixed" and not parameter.when}
    names = mutate or tuple(name for name in ("learning_rate", "weight_decay", "dropout") if name in by_name)
    unknown = sorted(set(names) - set(by_name))
    if unknown or not names:
        raise ConfigError(f"--mutate {','.join(unknown) or '(nothing)'}: not sampled for every trial by the search space; choose from {', '.join(by_name)}")
    return PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=perturbation_interval or max(1, budget.epochs // 4),
        hyperparam_mutations={name: _tune_domain(by_name[name]) for name in names},
    )


def _tune_domain(parameter: Parameter) -> Any:
    """A search-space parameter as the Ray Tune domain PBT resamples from."""
    if parameter.type == "categorical":
        return list(parameter.choices)
    if parameter.type == "int":
        return tune.lograndint(int(parameter.low), int(parameter.high) + 1) if parameter.log else tune.randint(int(parameter.low), int(parameter.high) + 1)
    return tune.loguniform(parameter.low, parameter.high) if parameter.log else tune.uniform(parameter.low, parameter.high)


@SCHEDULERS.register("fifo")
def fifo(budget: Budget) -> FIFOScheduler:
    """No early stopping: every trial runs all its epochs."""
    return FIFOScheduler()


def create(registry: Registry[Any], name: str, budget: Budget, settings: Mapping[str, Any]) -> Any:
    """The strategy ``name`` with the given settings (None values mean "the default")."""
    try:
        factory = registry.get(name)
    except UnknownNameError as error:
        raise ConfigError(str(error)) from None
    given = {key: value for key, value in settings.items() if value is not None}
    accepted = registry.hyperparameters(name)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        flag = "--" + unknown[0].replace("_", "-")
        takes = ", ".join("--" + a.replace("_", "-") for a in accepted) or "no settings"
        raise ConfigError(f"{registry.kind} {name!r} does not take {flag}; it takes {takes}")
    return factory(budget, **given)
