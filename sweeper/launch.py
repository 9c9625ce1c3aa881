"""``sweeper launch``: validate everything, then run a Ray Tune sweep with OptunaSearch and ASHA.

Order matters for the user: every check that can fail on their input (family, preset, search
space, options, data file, tracking store) runs before Ray starts or an MLflow run is created.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from search_spaces import SearchSpace
from sweeper.tracking import SweepTracker, TrialLogger, check_reachable, default_tracking_uri, trial_status
from trainables.data import DataSplits
from trainables.errors import ConfigError, UserError
from trainables.families import Family, Preset, get_family
from trainables.train_loop import TrainSettings, tune_trainable

logger = logging.getLogger(__name__)

SCHEDULERS = ("asha", "fifo")


class AllTrialsDivergedError(UserError):
    pass


@dataclass(frozen=True)
class LaunchOptions:
    family: str
    preset: str = "default"
    trials: int | None = None  # default: the preset's
    epochs: int | None = None  # default: the preset's
    name: str | None = None  # default: FAMILY-YYYYmmdd-HHMMSS
    seed: int = 0
    max_concurrent: int | None = None  # default: as many as the resources allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    storage: str = "ray_results"
    tracking_uri: str | None = None  # default: sqlite:///./mlflow.db
    address: str | None = None  # an existing Ray cluster; default: start Ray locally
    data: Path | None = None  # the user's Parquet file instead of the family's generator
    search_space: Path | None = None  # the user's YAML instead of the family's
    scheduler: str = "asha"


@dataclass(frozen=True)
class SweepPlan:
    """A launch whose every user-facing input has been checked."""

    options: LaunchOptions
    family: Family
    preset: Preset
    space: SearchSpace
    name: str
    trials: int
    epochs: int
    storage: str
    tracking_uri: str


@dataclass(frozen=True)
class SweepSummary:
    name: str
    family: str
    metric: str
    mode: str
    results_path: str
    tracking_uri: str
    parent_run_id: str
    trials_by_status: dict[str, int]
    best_trial_id: str
    best_value: float
    best_config: dict[str, Any]
    best_epoch: int
    reference: dict[str, float] = field(default_factory=dict)


def plan_sweep(options: LaunchOptions) -> SweepPlan:
    """Check the options against the family; raise a UserError naming the problem and the fix."""
    family = get_family(options.family)
    if options.preset not in family.presets:
        raise ConfigError(f"unknown preset {options.preset!r}; choose one of {', '.join(family.presets)}")
    preset = family.presets[options.preset]
    _check_positive(trials=options.trials, epochs=options.epochs, max_concurrent=options.max_concurrent)
    _check_positive(cpus_per_trial=options.cpus_per_trial)
    if options.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0, got {options.gpus_per_trial}")
    if options.scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {options.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if options.address is None:
        check_fits(options.cpus_per_trial, options.gpus_per_trial, [local_resources()])
    space = family.search_space(options.search_space)
    name = options.name or f"{family.name}-{datetime.now():%Y%m%d-%H%M%S}"
    storage = _storage(options.storage)
    if "://" not in storage and (Path(storage) / name).exists():
        raise ConfigError(f"a sweep named {name!r} already exists in {storage}; pass another --name")
    tracking_uri = options.tracking_uri or default_tracking_uri()
    check_reachable(tracking_uri)
    return SweepPlan(
        options, family, preset, space, name,
        trials=options.trials or preset.trials,
        epochs=options.epochs or preset.epochs,
        storage=storage,
        tracking_uri=tracking_uri,
    )  # fmt: skip


def launch(options: LaunchOptions) -> SweepSummary:
    plan = plan_sweep(options)
    data = plan.family.load_data(plan.preset.data, options.data, options.seed)
    logger.info("data: %s, %s", data.source, data.sizes())
    reference = plan.family.reference(data.validation) if plan.family.reference else {}

    tracker = SweepTracker(plan.tracking_uri, plan.family.name)  # creates the database if needed
    started_ray = _start_ray(options)
    try:
        if options.address is not None:
            check_fits(options.cpus_per_trial, options.gpus_per_trial, cluster_nodes())
        parent_run_id = tracker.start_sweep(plan.name, _sweep_params(plan, data))
        tracker.log_metrics(parent_run_id, {f"reference_val_{k}": v for k, v in reference.items()}, step=0)
        results = _tuner(plan, data, tracker, parent_run_id).fit()
        return _summarise(plan, results, tracker, parent_run_id, reference)
    finally:
        if started_ray:
            ray.shutdown()


def _tuner(plan: SweepPlan, data: DataSplits, tracker: SweepTracker, parent_run_id: str) -> tune.Tuner:
    family, options = plan.family, plan.options
    settings = TrainSettings(family=family.name, epochs=plan.epochs, seed=options.seed)
    trainable = tune.with_parameters(
        tune_trainable, data=data.without_test(), context=family.model_context(data.train), settings=settings
    )  # the data goes to the object store once; every trial on every node reads it from there
    resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    sampler = optuna.samplers.TPESampler(seed=options.seed, n_startup_trials=max(2, min(10, plan.trials // 3)))
    # A define-by-run searcher ignores TuneConfig's metric and mode: it needs its own.
    optuna_search = OptunaSearch(space=plan.space, metric=family.validation_metric, mode=family.mode, sampler=sampler)
    search = ConcurrencyLimiter(optuna_search, max_concurrent=_max_concurrent(options))
    scheduler = (
        ASHAScheduler(max_t=plan.epochs, grace_period=max(1, plan.epochs // 3), reduction_factor=3)
        if options.scheduler == "asha"
        else FIFOScheduler()
    )
    return tune.Tuner(
        tune.with_resources(trainable, resources),
        tune_config=tune.TuneConfig(
            metric=family.validation_metric,
            mode=family.mode,
            search_alg=search,
            scheduler=scheduler,
            num_samples=plan.trials,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=plan.storage,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2,  # the best epoch and the latest (Ray always keeps the latest for resuming)
                checkpoint_score_attribute=family.validation_metric,
                checkpoint_score_order=family.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=2),
            callbacks=[TrialLogger(tracker, plan.name, parent_run_id, plan.epochs)],
            verbose=1,
        ),
    )


def trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _summarise(plan: SweepPlan, results: tune.ResultGrid, tracker: SweepTracker, parent_run_id: str, reference) -> SweepSummary:
    family = plan.family
    statuses = [("error" if r.error else trial_status(r.metrics or {}, plan.epochs)) for r in results]
    by_status = {status: statuses.count(status) for status in sorted(set(statuses))}
    candidates = [
        (r, r.metrics_dataframe) for r, status in zip(results, statuses) if status not in ("error", "diverged") and r.metrics_dataframe is not None
    ]
    if not candidates:
        tracker.finish(parent_run_id, "failed", "FAILED")
        if by_status.get("diverged") == len(statuses):
            raise AllTrialsDivergedError(
                f"every trial of sweep {plan.name!r} diverged ({len(statuses)} of {len(statuses)}); "
                "narrow the learning_rate range of the search space"
            )
        raise RuntimeError(f"no trial of sweep {plan.name!r} finished: {by_status}")
    pick = np.argmin if family.mode == "min" else np.argmax
    best_values = [frame[family.validation_metric].to_numpy() for _, frame in candidates]
    winner = int(pick([values[pick(values)] for values in best_values]))
    best, frame = candidates[winner]
    best_row = frame.iloc[int(pick(best_values[winner]))]
    summary = SweepSummary(
        name=plan.name,
        family=family.name,
        metric=family.validation_metric,
        mode=family.mode,
        results_path=os.path.join(plan.storage, plan.name),
        tracking_uri=plan.tracking_uri,
        parent_run_id=parent_run_id,
        trials_by_status=by_status,
        best_trial_id=str(best.metrics["trial_id"]),
        best_value=float(best_row[family.validation_metric]),
        best_config=dict(best.config),
        best_epoch=int(best_row["epoch"]),
        reference=dict(reference),
    )
    tracker.log_metrics(parent_run_id, {f"best_{family.validation_metric}": summary.best_value}, step=0)
    tracker.set_tags(parent_run_id, {"sweeper.best_trial_id": summary.best_trial_id, **{f"sweeper.trials_{k}": v for k, v in by_status.items()}})
    tracker.finish(parent_run_id, "completed")
    return summary


def _start_ray(options: LaunchOptions) -> bool:
    if ray.is_initialized():
        return False
    if options.address is None:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=options.address, logging_level=logging.WARNING)
    return True


def _max_concurrent(options: LaunchOptions) -> int:
    if options.max_concurrent:
        return options.max_concurrent
    available = ray.cluster_resources()
    limits = [available.get("CPU", 1.0) // options.cpus_per_trial]
    if options.gpus_per_trial:
        limits.append(available.get("GPU", 0.0) // options.gpus_per_trial)
    return max(1, int(min(limits)))


def local_resources() -> dict[str, float]:
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def cluster_nodes() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def check_fits(cpus: float, gpus: float, nodes: list[Mapping[str, float]]) -> None:
    """A trial must fit on one node; say what the largest node has if it does not."""
    if any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        return
    largest = max(nodes, key=lambda node: (node.get("CPU", 0), node.get("GPU", 0)), default={})
    raise ConfigError(
        f"a trial asks for {cpus:g} CPUs and {gpus:g} GPUs, but the largest node has "
        f"{largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs; lower --cpus-per-trial / --gpus-per-trial"
    )


def _check_positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


def _storage(storage: str) -> str:
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().resolve())


def _sweep_params(plan: SweepPlan, data: DataSplits) -> dict[str, Any]:
    options = {k: v for k, v in asdict(plan.options).items() if v is not None}
    sizes = {f"data_{split}_rows": rows for split, rows in data.sizes().items()}
    settings = {f"data_{key}": value for key, value in plan.preset.data.items()} if plan.options.data is None else {}
    return {
        **options,
        "trials": plan.trials,
        "epochs": plan.epochs,
        "storage": plan.storage,
        "search_space": plan.space.source,
        "data_source": data.source,
        **settings,
        **sizes,
    }
