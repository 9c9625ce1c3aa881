"""``sweeper launch``: validate everything, then run a Ray Tune sweep with OptunaSearch and ASHA.

Order matters for the user: every check that can fail on their input (family, preset, search
space, options, data file, tracking store) runs before Ray starts or an MLflow run is created.
"""
from __future__ import annotations

import logging
import os
import signal
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

import optuna
import pyarrow.fs
import pyarrow.parquet
import ray
from ray import tune
from ray.tune import ExperimentAnalysis, ProgressReporter
from ray.tune.execution import class_cache
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from mlflow_server.options import tracking_uri_or_default
from search_spaces import InlineSpace, SearchSpace
from sweeper import strategies
from sweeper.console import SweepConsole
from sweeper.cluster import check_fits, cluster_nodes, concurrent_slots, local_resources, physical_memory, ray_address, start_ray
from sweeper.decision import relative_gain
from sweeper.interrupts import signal_handlers_restored
from sweeper.journal import SweepLog, TrialLogger, open_sweep_log
from sweeper.objectives import FRONT_TAG, Front, Objective, resolve_objectives, sweep_front
from sweeper.strategies import SAMPLERS, SCHEDULERS, Budget
from sweeper.sweep_artifacts import write_sweep_artifacts
from sweeper.sweeps import (
    DEFAULT_STORAGE,
    SweepRecord,
    TrialResult,
    journal_dir,
    load_record,
    rank_trials,
    resolve_storage,
    save_record,
    read_trials,
    sweep_data,
    sweep_space,
)
from sweeper.tracking import SWEEP_KEY, TRIAL_PREFIX, TrackingError, check_reachable, split_records, system_metrics, trial_key
from sweeper.warm_start import STUDY_NAME, warm_storage, warm_trials
from trainables.data import DataSplits
from trainables.errors import ConfigError, UserError
from trainables.families import Family, Preset, get_family
from trainables.train_loop import TrainSettings, tune_trainable

logger = logging.getLogger(__name__)

VALUE_BYTES = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}  # Parquet physical types
OBJECT_STORE_FRACTION = 0.3  # Ray's default object store size, of a node's memory
# What a trial's worker imports before its first trial can start; local Ray's idle workers import
# them while the sweep is set up (cluster.start_ray).
TRIAL_WORKER_MODULES = ("ray.tune", tune_trainable.__module__)


class AllTrialsDivergedError(UserError):
    pass


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a recorded sweep before all its trials ended; ``sweeper resume`` continues it."""

    def __init__(self, name: str, storage: str, address: str | None) -> None:
        super().__init__(name)
        self.name, self.storage, self.address = name, storage, address


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
    storage: str = DEFAULT_STORAGE
    tracking_uri: str | None = None  # default: sqlite:///./mlflow.db
    address: str | None = None  # an existing Ray cluster; default: start Ray locally
    data: Path | None = None  # the user's Parquet file instead of the family's generator
    search_space: Path | InlineSpace | None = None  # the user's YAML (or a sweep file's inline one) instead of the family's
    plugins: tuple[str, ...] = ()  # modules of the user's own families, models or attention (trainables/plugins.py)
    objectives: tuple[str, ...] = ()  # several: a Pareto search (sweeper/objectives.py); () the main metric alone
    scheduler: str | None = None  # sweeper/strategies.py; default asha, fifo with several objectives
    sampler: str = "tpe"  # sweeper/strategies.py: tpe, nsga2, cmaes, gp, qmc, random
    grace_period: int | None = None  # scheduler settings; None: the strategy's default
    reduction_factor: float | None = None
    brackets: int | None = None
    perturbation_interval: int | None = None
    mutate: tuple[str, ...] | None = None
    startup: int | None = None  # sampler settings: random trials before modelling
    population: int | None = None
    warm_start: tuple[str, ...] = ()  # earlier sweeps of the family (same storage) whose trials seed the study
    time_budget_s: float | None = None  # stop starting and running trials after this many seconds
    system_metrics: bool = False  # MLflow's system metrics of the driver's machine on the sweep's run
    max_failures: int = 2  # retries of a trial whose process or node died, from its last checkpoint
    memory_budget_gb: float | None = None  # for --data; default: the object store of the nodes


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
    objectives: tuple[Objective, ...]
    sampler: optuna.samplers.BaseSampler
    scheduler: TrialScheduler
    warm_trials: tuple[optuna.trial.FrozenTrial, ...] = ()


@dataclass(frozen=True)
class SweepResult:
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
    reference: dict[str, float] = field(default_factory=dict)  # the non-learned reference, validation split
    pareto_front: Front | None = None  # with several objectives
    unsent_records: int = 0  # still in the journal: MLflow was unreachable at the end

    @property
    def gain_over_reference(self) -> float | None:
        """How much better the best trial is than the non-learned reference (positive: better)."""
        value = self.reference.get(self.metric.removeprefix("val_"))
        return None if value is None else relative_gain(self.best_value, value, self.mode)


def plan_sweep(options: LaunchOptions) -> SweepPlan:
    """Check the options against the family; raise a UserError naming the problem and the fix."""
    options = replace(options, address=ray_address(options.address))
    family = get_family(options.family, options.plugins)
    if options.preset not in family.presets:
        raise ConfigError(f"unknown preset {options.preset!r}; choose one of {', '.join(family.presets)}")
    preset = family.presets[options.preset]
    _check_positive(trials=options.trials, epochs=options.epochs, max_concurrent=options.max_concurrent)
    _check_positive(cpus_per_trial=options.cpus_per_trial)
    if options.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0 (-1 is not supported: a broken trial would retry forever), got {options.max_failures}")
    if options.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0, got {options.gpus_per_trial}")
    _check_positive(grace_period=options.grace_period, brackets=options.brackets, startup=options.startup)
    if options.reduction_factor is not None and options.reduction_factor <= 1:
        raise ConfigError(f"--reduction-factor must be greater than 1, got {options.reduction_factor}")
    _check_positive(memory_budget_gb=options.memory_budget_gb, time_budget=options.time_budget_s)
    if options.address is None:
        check_fits(options.cpus_per_trial, options.gpus_per_trial, [local_resources()])
        _check_data_budget(options, OBJECT_STORE_FRACTION * physical_memory(), "Ray's object store: 30% of this machine's memory")
    space = family.search_space(options.search_space)
    name = options.name or f"{family.name}-{datetime.now():%Y%m%d-%H%M%S}"
    storage = resolve_storage(options.storage)
    if "://" not in storage and (Path(storage) / name).exists():
        raise ConfigError(f"a sweep named {name!r} already exists in {storage}; pass another --name")
    tracking_uri = tracking_uri_or_default(options.tracking_uri)
    check_reachable(tracking_uri)
    trials, epochs = options.trials or preset.trials, options.epochs or preset.epochs
    objectives = resolve_objectives(family, options.objectives)
    budget = Budget(trials, epochs, options.seed, space, len(objectives))
    scheduler_settings = _settings(options, "grace_period", "reduction_factor", "brackets", "perturbation_interval", "mutate")
    scheduler = strategies.create(SCHEDULERS, options.scheduler or default_scheduler(objectives), budget, scheduler_settings)
    sampler = strategies.create(SAMPLERS, options.sampler, budget, _settings(options, "startup", "population"))
    if options.warm_start and isinstance(scheduler, PopulationBasedTraining):
        raise ConfigError("--warm-start feeds earlier trials to the sampler, and pbt's sampler only draws the first population; drop one of them")
    earlier = [load_record(name, storage) for name in options.warm_start]
    warm = tuple(warm_trials(earlier, family, space, objectives)) if earlier else ()
    return SweepPlan(
        options, family, preset, space, name,
        trials=trials,
        epochs=epochs,
        storage=storage,
        tracking_uri=tracking_uri,
        objectives=objectives,
        sampler=sampler,
        scheduler=scheduler,
        warm_trials=warm,
    )  # fmt: skip


def default_scheduler(objectives: Sequence[Objective]) -> str:
    """ASHA for one objective; FIFO for several, as ASHA would rank trials by the first alone."""
    return "asha" if len(objectives) == 1 else "fifo"


def _settings(options: LaunchOptions, *names: str) -> dict[str, Any]:
    return {name: getattr(options, name) for name in names}


def launch(options: LaunchOptions) -> SweepResult:
    plan = plan_sweep(options)
    options = plan.options  # with the cluster address resolved
    data = plan.family.load_data(plan.preset.data, options.data, options.seed)
    logger.info("data: %s, %s", data.source, data.sizes())
    reference = plan.family.reference_metrics(data, "validation")

    started_ray = start_ray(options.address, options.plugins, preload=TRIAL_WORKER_MODULES)
    try:
        if options.address is not None:
            nodes = cluster_nodes()
            check_fits(options.cpus_per_trial, options.gpus_per_trial, nodes)
            smallest_store = min(node.get("object_store_memory", 0.0) for node in nodes)
            _check_data_budget(options, smallest_store, "the smallest object store of the cluster's nodes")
        log = open_sweep_log(plan.tracking_uri, plan.family.name, plan.name, journal_dir(plan.storage, plan.name))
        log.start_run(SWEEP_KEY, plan.name, "sweep", _sweep_params(plan, data), {})
        if log.run_id(SWEEP_KEY) is None:
            raise TrackingError(f"MLflow at {plan.tracking_uri} stopped answering before the sweep started; start it and launch again")
        log.log(SWEEP_KEY, {f"reference_val_{k}": v for k, v in reference.items()})
        log.log_inputs(SWEEP_KEY, split_records(plan.family.name, data, ("train", "validation")))
        record = _record(plan, log.run_id(SWEEP_KEY))
        save_record(record)
        with system_metrics(record.parent_run_id, record.tracking_uri, record.system_metrics):
            return _fit(_tuner(plan, data, record), plan.family, plan.space, record, log, reference, options.address)
    finally:
        if started_ray:
            ray.shutdown()


def resume(record: SweepRecord, family: Family, address: str | None = None) -> SweepResult:
    """Continue an interrupted sweep where it stopped: finished trials are kept, unfinished ones
    continue from their last checkpoint, the Optuna searcher continues its study, and MLflow
    records go to the same parent and trial runs (the journal knows their ids)."""
    address = ray_address(address)
    space = sweep_space(record, family)
    check_reachable(record.tracking_uri)
    data = sweep_data(record, family)
    reference = family.reference_metrics(data, "validation")
    started_ray = start_ray(address, record.plugins, preload=TRIAL_WORKER_MODULES)
    try:
        log = open_sweep_log(record.tracking_uri, family.name, record.name, record.journal_dir)
        log.flush()  # whatever the interrupted driver had not sent yet
        filesystem, path = pyarrow.fs.FileSystem.from_uri(record.path)
        saved_trials = ExperimentAnalysis(path, storage_filesystem=filesystem).trials
        _forget_lost_trials(log, {trial.trial_id for trial in saved_trials})
        tune_environment()
        tuner = tune.Tuner.restore(path, trainable=trainable(record, family, data), resume_errored=True, storage_filesystem=filesystem)
        # Ray continues every trial that did not terminate (errored ones too: resume_errored).
        _mark_runs(log, [trial.trial_id for trial in saved_trials if trial.status != "TERMINATED"], "running", "RUNNING")
        with system_metrics(record.parent_run_id, record.tracking_uri, record.system_metrics, resume=True):
            return _fit(tuner, family, space, record, log, reference, address)
    finally:
        if started_ray:
            ray.shutdown()


def _forget_lost_trials(log: SweepLog, known: set[str]) -> None:
    """Ray saves its experiment state every few seconds: a trial started after the last save is
    unknown to the restored experiment (the restored searcher proposes its config again, as a new
    trial). Its MLflow run would stand for a trial that does not exist, so it is deleted."""
    for key in sorted(log.keys()):
        if key.startswith(TRIAL_PREFIX) and key.removeprefix(TRIAL_PREFIX) not in known:
            logger.info("trial %s started after the last saved state; it runs again as a new trial", key)
            log.discard(key)


def _fit(tuner: tune.Tuner, family: Family, space: SearchSpace, record: SweepRecord, log: SweepLog,
         reference: Mapping[str, float], address: str | None) -> SweepResult:  # fmt: skip
    """Run the sweep to its end, or raise SweepInterrupted after Ctrl-C, with its MLflow runs KILLED."""
    try:
        with signal_handlers_restored(signal.SIGINT, signal.SIGUSR1):
            tuner.fit()  # the first Ctrl-C makes Ray Tune save its state and return early, without an error
        trials = read_trials(record, family.validation_metric, family.mode)
    except KeyboardInterrupt:  # a second Ctrl-C skips that save; resume starts from the one before
        trials = read_trials(record, family.validation_metric, family.mode)
    log.stop_background()  # TrialLogger stops it when Ray Tune's loop ends, unless a second Ctrl-C cut that short
    unfinished = [trial.trial_id for trial in trials if trial.status in ("running", "pending")]
    # A spent time budget ends the sweep before all its trials started; Ray stopped the running ones.
    if unfinished or (len(trials) < record.trials and record.time_budget_s is None):
        _mark_runs(log, unfinished, "interrupted", "KILLED")  # an unreachable MLflow gets it on resume (journal)
        raise SweepInterrupted(record.name, record.storage, address)
    return _conclude(family, space, record, log, reference, trials)


def _mark_runs(log: SweepLog, trial_ids: list[str], status: str, mlflow_status: str) -> None:
    """Set the sweep's run and those of ``trial_ids`` to ``mlflow_status``: KILLED when Ctrl-C stops
    them, so the MLflow UI shows no run as RUNNING that is not; RUNNING again when they resume."""
    started = log.keys()
    for key in [SWEEP_KEY, *(trial_key(trial_id) for trial_id in trial_ids)]:
        if key in started:
            log.finish(key, status, mlflow_status)


def _max_concurrent(options: LaunchOptions) -> int:
    return options.max_concurrent or concurrent_slots(options.cpus_per_trial, options.gpus_per_trial)


def trainable(record: SweepRecord, family: Family, data: DataSplits) -> Any:
    """The generic trainable with the sweep's data and resources; the same for launch and resume."""
    settings = TrainSettings(family=family.name, epochs=record.epochs, seed=record.seed, plugins=tuple(record.plugins))
    with_data = tune.with_parameters(
        tune_trainable, data=data.without_test(), context=family.context(data.train), settings=settings
    )  # the data goes to the object store once; every trial on every node reads it from there
    return tune.with_resources(with_data, {"cpu": record.cpus_per_trial, "gpu": record.gpus_per_trial})


def _tuner(plan: SweepPlan, data: DataSplits, record: SweepRecord) -> tune.Tuner:
    family, options = plan.family, plan.options
    return build_tuner(
        trainable(record, family, data),
        plan.space,
        plan.objectives,
        trials=plan.trials,
        sampler=plan.sampler,
        scheduler=plan.scheduler,
        warm_trials=plan.warm_trials,
        max_concurrent=_max_concurrent(options),
        max_failures=options.max_failures,
        time_budget_s=options.time_budget_s,
        storage=plan.storage,
        name=plan.name,
        callbacks=[TrialLogger(record.tracking_uri, record.family, record.name, record.journal_dir, record.epochs)],
        console=SweepConsole(plan.objectives[0].name, plan.objectives[0].mode, record.epochs),
    )


def tune_environment() -> None:
    """Ray Tune's settings for a sweep, read when fit() runs: set before a launch and before a
    resume (a restored Tuner is not built here). A user's own environment variables win."""
    # With num_to_keep, Ray saves the experiment state whenever a trial has checkpointed that many
    # times since the last save, so the state never names a deleted checkpoint; short epochs make
    # that frequent. Fresh state is what `sweeper resume` restores from: keep it, skip the warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's newer console ignores progress reporters; RAY_AIR_NEW_OUTPUT=1 brings its tables back.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray adds a TensorBoard logger that fsyncs its event file after every result, on Tune's loop
    # (24 ms a result, BENCHMARKS.md section 8). Every metric is in MLflow; Ray's own result files,
    # which its analysis and `resume` read, are still written. TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0
    # brings TensorBoard's files back.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Ray Tune gives every trial actor the runtime environment {"env_vars": {"PL_DISABLE_FORK": "1"}}
    # (for PyTorch Lightning, which nothing here uses). An actor with a runtime environment cannot
    # take one of the idle workers Ray starts with itself, and each of its workers starts through
    # Ray's runtime-environment agent and a second Python start: about 0.5 s more per slot, and a
    # third of the Ray daemons' CPU at many slots (BENCHMARKS.md section 1). Without the default
    # the environment is empty unless the driver has one of the variables Ray Tune passes on.
    class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)


def build_tuner(
    trainable: Any,
    space: SearchSpace,
    objectives: Sequence[Objective],
    *,
    trials: int,
    sampler: optuna.samplers.BaseSampler,
    scheduler: TrialScheduler,
    max_concurrent: int,
    max_failures: int,
    storage: str,
    name: str,
    callbacks: list[Any],
    warm_trials: Sequence[optuna.trial.FrozenTrial] = (),
    time_budget_s: float | None = None,
    console: ProgressReporter | None = None,
) -> tune.Tuner:
    """The sweep's Tuner around any function trainable that reports the ``objectives`` and checkpoints.
    The scheduler and checkpoint ranking go by the first objective. Without a ``console``, Ray prints nothing."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the searcher's in-memory study is not news
    metric, mode = objectives[0].name, objectives[0].mode
    if isinstance(scheduler, PopulationBasedTraining):
        # Ray's PBT refuses search algorithms: the sampler draws the starting population up front.
        search_alg = BasicVariantGenerator(points_to_evaluate=population(space, sampler, trials), max_concurrent=max_concurrent)
        param_space = dict.fromkeys(space.names)  # Ray takes only the keys it has: None where a parameter does not apply
        keep = None  # a trial may copy another's checkpoint at any time: deleting one breaks the copy (Ray warns)
    else:
        search_alg = ConcurrencyLimiter(optuna_searcher(space, objectives, sampler, warm_trials), max_concurrent=max_concurrent)
        param_space, keep = None, 2  # the best epoch and the latest (Ray always keeps the latest, for resuming)
    tune_environment()
    callbacks = [*callbacks, CSVLoggerCallback(), JsonLoggerCallback()]  # what Ray's analysis reads; kept by a restored Tuner
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=trials,
            time_budget_s=time_budget_s,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=metric, checkpoint_score_order=mode),
            # A trial whose process or node dies starts again from its last checkpoint.
            failure_config=tune.FailureConfig(max_failures=max_failures),
            callbacks=callbacks,
            progress_reporter=console,
            verbose=1 if console else 0,  # with the older console, 1 is the reporter's lines and nothing else
        ),
    )


def optuna_searcher(space: SearchSpace, objectives: Sequence[Objective], sampler: optuna.samplers.BaseSampler,
                    warm_trials: Sequence[optuna.trial.FrozenTrial]) -> OptunaSearch:  # fmt: skip
    """Ray's Optuna searcher over ``space``, told the values of every objective; warm-started
    from ``warm_trials`` if any. A define-by-run searcher ignores TuneConfig's metric and mode."""
    names, modes = [o.name for o in objectives], [o.mode for o in objectives]
    several = len(objectives) > 1
    return OptunaSearch(
        space=space, metric=names if several else names[0], mode=modes if several else modes[0], sampler=sampler,
        storage=warm_storage(warm_trials, modes) if warm_trials else None, study_name=STUDY_NAME,
    )  # fmt: skip


def population(space: SearchSpace, sampler: optuna.samplers.BaseSampler, size: int) -> list[dict[str, Any]]:
    """``size`` configs drawn from ``space`` by ``sampler`` with no results to learn from."""
    study = optuna.create_study(sampler=sampler)
    configs = []
    for _ in range(size):
        trial = study.ask()
        constants = space(trial)
        configs.append({**trial.params, **constants})
    return configs


def trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _record(plan: SweepPlan, parent_run_id: str) -> SweepRecord:
    options = plan.options
    return SweepRecord(
        name=plan.name,
        family=plan.family.name,
        preset=options.preset,
        seed=options.seed,
        trials=plan.trials,
        epochs=plan.epochs,
        storage=plan.storage,
        tracking_uri=plan.tracking_uri,
        parent_run_id=parent_run_id,
        data_settings=dict(plan.preset.data),
        data_file=str(options.data.resolve()) if options.data else None,
        search_space=plan.space.source,
        cpus_per_trial=options.cpus_per_trial,
        gpus_per_trial=options.gpus_per_trial,
        time_budget_s=options.time_budget_s,
        objectives=tuple(objective.name for objective in plan.objectives),
        options={k: str(v) for k, v in asdict(options).items() if v is not None},
        plugins=options.plugins,
        search_space_document=options.search_space.document if isinstance(options.search_space, InlineSpace) else None,
        system_metrics=options.system_metrics,
    )


def _conclude(family: Family, space: SearchSpace, record: SweepRecord, log: SweepLog, reference: Mapping[str, float],
               trials: list[TrialResult]) -> SweepResult:  # fmt: skip
    """Log the finished sweep's artifacts and best trial, as read back from storage (as any later command will)."""
    statuses = [trial.status for trial in trials]
    by_status = {status: statuses.count(status) for status in sorted(set(statuses))}
    ranked = rank_trials(trials, family.mode)
    objectives = resolve_objectives(family, record.objectives)
    front = sweep_front(ranked, objectives)
    summary_dir = record.journal_dir / "summary"  # kept: the journal may send it later
    write_sweep_artifacts(trials, space, objectives, summary_dir, front.trial_ids if front else ())
    log.log_artifacts(SWEEP_KEY, summary_dir, "summary")
    log.log(SWEEP_KEY, tags={f"sweeper.trials_{k}": v for k, v in by_status.items()})
    if not ranked:
        log.finish(SWEEP_KEY, "failed", "FAILED")
        log.drain()
        _raise_no_usable_trial(record, by_status)
    if front:
        _log_front(log, front)
    best = ranked[0]
    tags = {"sweeper.best_trial_id": best.trial_id}
    if family.metric in reference:
        tags["sweeper.best_beats_reference"] = str(family.is_better(best.best_value, reference[family.metric])).lower()
    log.log(SWEEP_KEY, {f"best_{family.validation_metric}": best.best_value}, tags=tags)
    log.finish(SWEEP_KEY, "completed")
    log.drain()
    return SweepResult(
        name=record.name,
        family=family.name,
        metric=family.validation_metric,
        mode=family.mode,
        results_path=record.path,
        tracking_uri=record.tracking_uri,
        parent_run_id=record.parent_run_id,
        trials_by_status=by_status,
        best_trial_id=best.trial_id,
        best_value=best.best_value,
        best_config=best.config,
        best_epoch=best.best_epoch,
        reference=dict(reference),
        pareto_front=front,
        unsent_records=len(log.journal.pending()),
    )


def _raise_no_usable_trial(record: SweepRecord, by_status: Mapping[str, int]) -> NoReturn:
    trials = sum(by_status.values())
    if by_status.get("diverged") == trials:
        raise AllTrialsDivergedError(
            f"every trial of sweep {record.name!r} diverged ({trials} of {trials}); narrow the learning_rate range of the search space"
        )
    if record.time_budget_s is not None:
        raise UserError(
            f"the time budget of sweep {record.name!r} ({record.time_budget_s:g} s) ended before any trial finished an epoch; "
            "raise --time-budget"
        )
    raise RuntimeError(f"no trial of sweep {record.name!r} finished: {by_status}")


def _log_front(log: SweepLog, front: Front) -> None:
    """Mark the front's trial runs, and give the sweep's run its members and hypervolume."""
    for trial_id in front.trial_ids:
        log.log(trial_key(trial_id), tags={FRONT_TAG: "true"})
    reference = ", ".join(f"{o.name}={value:.6g}" for o, value in zip(front.objectives, front.reference))
    log.log(SWEEP_KEY, {"pareto_hypervolume": front.hypervolume, "pareto_front_size": len(front.trials)}, tags={
        "sweeper.objectives": ",".join(o.name for o in front.objectives),
        "sweeper.hypervolume_reference": reference,
        FRONT_TAG: ",".join(front.trial_ids),
    })  # fmt: skip


def _check_positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


def _check_data_budget(options: LaunchOptions, capacity_bytes: float, capacity: str) -> None:
    """The driver and the object store of every node that runs a trial hold the whole data set:
    refuse a file that cannot fit before reading it, with the numbers."""
    if options.data is None or not options.data.is_file():
        return  # the presets' generated data fits; a missing file is named by the loader
    try:
        needed = _decoded_size(pyarrow.parquet.read_metadata(options.data))
    except (pyarrow.ArrowException, OSError):
        return  # not Parquet: the loader names the problem
    budget, source = (options.memory_budget_gb * 2**30, "--memory-budget-gb") if options.memory_budget_gb else (capacity_bytes, capacity)
    if needed > budget:
        raise ConfigError(
            f"data file {options.data} takes {_gib(needed)} in memory, more than the budget of {_gib(budget)} ({source}); "
            "use a smaller file, or raise --memory-budget-gb if the nodes have the memory"
        )


def _decoded_size(metadata: pyarrow.parquet.FileMetaData) -> int:
    """Bytes of the file's values as arrays: Parquet's sizes are of encoded (e.g. run-length) data."""
    size = 0
    for group in map(metadata.row_group, range(metadata.num_row_groups)):
        for column in map(group.column, range(group.num_columns)):
            width = VALUE_BYTES.get(column.physical_type)
            size += column.num_values * width if width else column.total_uncompressed_size
    return size


def _gib(size: float) -> str:
    return f"{size / 2**30:.3g} GiB"


def _sweep_params(plan: SweepPlan, data: DataSplits) -> dict[str, Any]:
    options = {k: v for k, v in asdict(plan.options).items() if v is not None}
    sizes = {f"data_{split}_rows": rows for split, rows in data.sizes().items()}
    settings = {f"data_{key}": value for key, value in plan.preset.data.items()} if plan.options.data is None else {}
    return {
        **options,
        "scheduler": plan.options.scheduler or default_scheduler(plan.objectives),
        "objectives": ",".join(objective.name for objective in plan.objectives),
        "trials": plan.trials,
        "epochs": plan.epochs,
        "storage": plan.storage,
        "search_space": plan.space.source,
        "data_source": data.source,
        **settings,
        **sizes,
    }
