"""Orchestration efficiency: what the sweep machinery costs per trial, beyond the trials' compute.

The same fixed-work trial (benchmarks/workload.py) runs N times
  (a) through the full stack, built as sweeper/launcher.py builds a sweep: Ray Tune Tuner,
      OptunaSearch over a SearchSpace, ConcurrencyLimiter, reuse_actors, per-epoch checkpoints,
      the TrialLogger writing MLflow parent and nested runs through the sweep journal to SQLite;
      one CPU per trial, as many concurrent trials as cores (FIFO: ASHA would change the work);
  (b) as a plain sequential in-process Optuna study (same sampler, same search space);
and (c) the ideal is the trials' compute measured in (b), divided by the cores.
Per-trial overhead = ((a) - (c)) x cores / N, in slot-seconds per trial; efficiency = (c) / (a).
Each (a) starts a local Ray of its own just before, as `sweeper launch` does; Ray's start-up is
timed apart and not in (a).
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import ray
from mlflow.entities import Run
from mlflow.store.tracking import SEARCH_MAX_RESULTS_THRESHOLD
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from benchmarks.common import Outcome, Row, Spread, figure, save_figure, seconds, time_calls, torch_threads, whiskers
from benchmarks.workload import Work, run_trial, tune_trial
from mlflow_server.options import default_tracking_uri
from search_spaces import SearchSpace, parse_search_space
from sweeper.cluster import concurrent_slots, start_ray
from sweeper.journal import TrialLogger, open_sweep_log
from sweeper.launcher import TRIAL_WORKER_MODULES, build_tuner
from sweeper.objectives import Objective
from sweeper.strategies import Budget, tpe
from sweeper.sweeps import journal_dir
from sweeper.tracking import SWEEP_KEY

logger = logging.getLogger(__name__)

FAMILY = "benchmark"  # the MLflow experiment of the benchmark's sweeps
METRIC, MODE = "loss", "min"
TARGET_OVERHEAD_S, TARGET_EFFICIENCY = 0.3, 0.90
# A tiny conditional space, written as a family's YAML would be (sleep_workload.synthetic_loss reads it).
SPACE = {
    "family": FAMILY,
    "parameters": {
        "architecture": {"type": "categorical", "choices": ["narrow", "wide"]},
        "width": {"type": "int", "low": 16, "high": 256, "log": True, "when": {"architecture": "wide"}},
        "learning_rate": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True},
        "batch_size": 32,
    },
}
ANCHORS = {
    "ray_release_test": "ray-project/ray release/tune_tests/scalability_tests/workloads/test_bookkeeping_overhead.py: "
    "10,000 one-second trials on 16 CPUs must finish within 800 s against an ideal 625 s, "
    "i.e. <= 0.28 s of overhead per trial and >= 78% efficiency",
    "ray_issue_46965": "ray-project/ray#46965: 100 trials took 41 s with OptunaSearch and 9 s without, "
    "i.e. about 0.32 s per trial added by the searcher",
}


@dataclass(frozen=True)
class Settings:
    trials: int
    epochs: int
    trial_seconds: float  # compute per trial; the number of matrix products is calibrated to it
    repeats: int


SIZES = {
    "tiny": Settings(trials=2, epochs=2, trial_seconds=0.1, repeats=1),
    "quick": Settings(trials=8, epochs=4, trial_seconds=2.5, repeats=2),
    "default": Settings(trials=16, epochs=5, trial_seconds=3.0, repeats=3),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    work = calibrate(settings)
    space = search_space()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="benchmark-orchestration-") as storage:
        runs, ray_start_s = [], []
        for index in range(settings.repeats):  # (b) and (a) in turn, so both see the same moments
            sequential = sequential_study(space, work, settings.trials)
            # A Ray of its own for each (a), started just before, as each `sweeper launch` starts
            # one: a slot's first trial actor takes one of the idle workers Ray starts with itself
            # (once), which import the trial's modules meanwhile, as launch has them do.
            started = time.perf_counter()
            if not start_ray(None, preload=TRIAL_WORKER_MODULES):  # what launch preloads: the workload imports the same
                raise RuntimeError("the orchestration benchmark starts Ray for each sweep: stop the Ray running in this process first")
            ray_start_s.append(time.perf_counter() - started)
            try:
                slots = concurrent_slots(1.0, 0.0)  # one CPU per trial, as sweeper launch's default
                trainable = tune.with_resources(tune.with_parameters(tune_trial, work=work), {"cpu": 1.0, "gpu": 0.0})
                stack = full_stack(trainable, space, settings.trials, work.epochs, slots, Path(storage), f"orchestration-{index}")
            finally:
                ray.shutdown()
            runs.append((sequential, stack))
    results = {"ray_start_s": float(np.median(ray_start_s)), "slots": slots, **analyse(runs, settings.trials, slots), "anchors": ANCHORS}
    plot(results, runs[-1][1], out / "orchestration.png")
    return Outcome({**asdict(settings), **asdict(work)}, results, summary(results, settings.trials))


def calibrate(settings: Settings, probe_products: int = 200) -> Work:
    """The matrix products per epoch that make one trial last ``trial_seconds`` on one thread."""
    probe = Work(epochs=1, products_per_epoch=probe_products)
    config = {"learning_rate": 1e-3}
    with torch_threads(1):
        probe_s = np.median(time_calls(lambda: run_trial(config, probe, lambda metrics, state: None), 3))
    products = settings.trial_seconds / settings.epochs / (probe_s / probe_products)
    return Work(epochs=settings.epochs, products_per_epoch=max(1, round(products)))


def search_space() -> SearchSpace:
    architectures = tuple(SPACE["parameters"]["architecture"]["choices"])
    takes = {"narrow": (), "wide": ("width",)}  # architecture -> the hyperparameters it accepts
    training = ("learning_rate", "batch_size")
    return parse_search_space(SPACE, __file__, FAMILY, architectures, takes.__getitem__, training)


# ---------------------------------------------------------------- (b) sequential Optuna


def sequential_study(space: SearchSpace, work: Work, trials: int) -> dict[str, Any]:
    """(b): the trials one after another in this process, on one thread, with Optuna's own loop."""
    computes: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        constants = space(trial)  # suggests the parameters, which trial.params then holds
        config = {**trial.params, **constants}
        losses: list[float] = []

        def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
            trial.report(metrics[METRIC], metrics["epoch"])
            losses.append(metrics[METRIC])
            computes.append(metrics["compute_s"])

        run_trial(config, work, report)
        return losses[-1]

    study = optuna.create_study(direction="minimize", sampler=tpe(Budget(trials=trials, epochs=work.epochs, seed=0)))
    with torch_threads(1):
        wall_s = seconds(lambda: study.optimize(objective, n_trials=trials))
    logger.info("sequential Optuna study of %d trials: %.1f s", trials, wall_s)
    return {"wall_s": wall_s, "compute_s": float(sum(computes))}


# ---------------------------------------------------------------- (a) the full stack


def full_stack(trainable: Any, space: SearchSpace, trials: int, epochs: int, slots: int, storage: Path, name: str) -> dict[str, Any]:
    """(a): a sweep as sweeper launch runs one, around a benchmark's ``trainable`` (which reports
    the workload's timings), MLflow in SQLite under ``storage``. As in launch, the parent MLflow
    run exists before the Tuner starts and is finished after; only fit() is timed."""
    tracking_uri = default_tracking_uri(storage)
    log = open_sweep_log(tracking_uri, FAMILY, name, journal_dir(str(storage), name))
    log.start_run(SWEEP_KEY, name, "sweep", {"trials": trials, "epochs": epochs}, {})
    tuner = full_stack_tuner(trainable, space, trials, epochs, slots, storage, name, tracking_uri)
    started = time.time()
    grid = tuner.fit()
    ended = time.time()
    log.finish(SWEEP_KEY, "completed")
    log.drain()
    runs = [trial_record(result, started) for result in grid]
    if grid.num_errors or any(run["epochs"] != epochs for run in runs):
        raise RuntimeError(f"the benchmark sweep {name} did not run every trial to the end: {grid.errors}")
    logger.info("full-stack sweep of %d trials: %.1f s", trials, ended - started)
    return {"wall_s": ended - started, "compute_s": sum(run["compute_s"] for run in runs), "trials": runs,
            "mlflow_trial_runs": len(trial_runs(tracking_uri, name))}  # fmt: skip


def full_stack_tuner(
    trainable: Any, space: SearchSpace, trials: int, epochs: int, slots: int, storage: Path, name: str, tracking_uri: str
) -> tune.Tuner:
    """The Tuner sweeper launch builds (``build_tuner``) with a benchmark's trainable and FIFO scheduling."""
    callback = TrialLogger(tracking_uri, FAMILY, name, journal_dir(str(storage), name), epochs)
    sampler = tpe(Budget(trials, epochs, seed=0))
    return build_tuner(trainable, space, (Objective(METRIC, MODE),), trials=trials, sampler=sampler, scheduler=FIFOScheduler(), max_concurrent=slots,
                       max_failures=2, storage=str(storage), name=name, callbacks=[callback])  # fmt: skip


def trial_record(result: Any, fit_started: float) -> dict[str, Any]:
    """One trial's timeline in seconds since fit() started, from its reported epochs."""
    frame = result.metrics_dataframe
    return {
        "trial_id": str(frame["trial_id"].iloc[0]),
        "pid": int(frame["pid"].iloc[0]),
        "start_s": float(frame["trial_started"].iloc[0] - fit_started),
        "end_s": float(frame["epoch_ended"].iloc[-1] - fit_started),
        "compute_s": float(frame["compute_s"].sum()),
        "epochs": len(frame),
    }


def trial_runs(tracking_uri: str, sweep: str) -> list[Run]:
    """The nested MLflow runs the sweep left: a check that the tracking really ran."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(FAMILY)
    query = f"tags.`sweeper.sweep` = '{sweep}' and tags.`sweeper.kind` = 'trial'"
    return list(client.search_runs([experiment.experiment_id], query, max_results=SEARCH_MAX_RESULTS_THRESHOLD))


# ---------------------------------------------------------------- analysis


def analyse(runs: list[tuple[dict[str, Any], dict[str, Any]]], trials: int, slots: int) -> dict[str, Any]:
    """Per repeat: (c) from (b)'s compute; overhead and efficiency of (a); where (a)'s slot time went."""
    rows = []
    for sequential, stack in runs:
        ideal = sequential["compute_s"] / slots
        rows.append({
            "full_stack_wall_s": stack["wall_s"],
            "sequential_wall_s": sequential["wall_s"],
            "ideal_s": ideal,
            "overhead_per_trial_s": (stack["wall_s"] - ideal) * slots / trials,
            "efficiency": ideal / stack["wall_s"],
            "sequential_overhead_per_trial_s": (sequential["wall_s"] - sequential["compute_s"]) / trials,
            "contention": stack["compute_s"] / sequential["compute_s"],
            **slot_time(stack, slots, trials),
        })  # fmt: skip
    spreads = {key: asdict(Spread.of([row[key] for row in rows])) for key in rows[0]}
    mlflow_runs = [stack["mlflow_trial_runs"] for _, stack in runs]
    return {"per_repeat": rows, "spread": spreads, "mlflow_trial_runs": mlflow_runs}


def slot_time(stack: dict[str, Any], slots: int, trials: int) -> dict[str, float]:
    """(a)'s slot-seconds (cores x wall) per trial, split into the trials' compute, their time
    outside compute (reporting, checkpoints), slot start-up before the first trial, and the rest
    (between trials and after the last)."""
    runs = stack["trials"]
    inside = sum(run["end_s"] - run["start_s"] for run in runs)
    first_starts = {}  # worker process -> when its first trial started
    for run in sorted(runs, key=lambda run: run["start_s"]):
        first_starts.setdefault(run["pid"], run["start_s"])
    startup = sum(sorted(first_starts.values())[:slots])
    return {
        "slot_compute_per_trial_s": stack["compute_s"] / trials,
        "slot_reporting_per_trial_s": (inside - stack["compute_s"]) / trials,
        "slot_startup_per_trial_s": startup / trials,
        "slot_between_per_trial_s": (slots * stack["wall_s"] - inside - startup) / trials,
    }


def summary(results: dict[str, Any], trials: int) -> list[Row]:
    spread = {key: Spread(**value) for key, value in results["spread"].items()}
    overhead, efficiency = spread["overhead_per_trial_s"], spread["efficiency"]
    return [
        Row(f"(a) full stack, {trials} trials, {results['slots']} at a time", spread["full_stack_wall_s"].show("s")),
        Row("(b) sequential Optuna study", spread["sequential_wall_s"].show("s")),
        Row("(c) ideal: trial compute / cores", spread["ideal_s"].show("s")),
        Row("per-trial overhead ((a)-(c)) x cores / N", overhead.show("s"), "<= 0.3 s",
            overhead.median <= TARGET_OVERHEAD_S),
        Row("parallel efficiency (c)/(a)", efficiency.show("%", 100, 1), ">= 90%",
            efficiency.median >= TARGET_EFFICIENCY),
        Row("  of it: slot start-up per trial", spread["slot_startup_per_trial_s"].show("s")),
        Row("  of it: between trials per trial", spread["slot_between_per_trial_s"].show("s")),
        Row("  of it: reporting + checkpoints per trial", spread["slot_reporting_per_trial_s"].show("s")),
        Row("  compute slowdown in (a) vs alone", spread["contention"].show("x", digits=3)),
        Row("(b) Optuna overhead per trial", spread["sequential_overhead_per_trial_s"].show("s", digits=3)),
        Row("Ray start-up before each (a), not in it (median)", f"{results['ray_start_s']:.1f} s"),
    ]  # fmt: skip


def plot(results: dict[str, Any], stack: dict[str, Any], path: Path) -> None:
    """Left: the three wall times (median, min-max); right: the last full-stack sweep's timeline."""
    fig, (walls, timeline) = figure(columns=2)
    names = ("full_stack_wall_s", "sequential_wall_s", "ideal_s")
    spreads = [Spread(**results["spread"][name]) for name in names]
    labels = ["(a) full stack", "(b) sequential", "(c) ideal"]
    walls.bar(labels, [s.median for s in spreads], yerr=whiskers(spreads), capsize=4, color=["C0", "C1", "C2"])
    walls.set_ylabel("wall time (s)")
    walls.set_title("same trials, three ways")
    lanes = {pid: lane for lane, pid in enumerate(sorted({run["pid"] for run in stack["trials"]}))}
    for run in stack["trials"]:
        duration = run["end_s"] - run["start_s"]
        timeline.barh(lanes[run["pid"]], duration, left=run["start_s"], color="C0", edgecolor="white")
    timeline.axvline(stack["wall_s"], color="k", linestyle="--", label="fit() returns")
    timeline.set_yticks(list(lanes.values()), [f"worker {lane}" for lane in lanes.values()])
    timeline.set_xlim(0, stack["wall_s"] * 1.02)
    timeline.set_xlabel("seconds since fit() started")
    timeline.set_title("(a): trials per worker process")
    timeline.legend(loc="lower right")
    save_figure(fig, path)
