"""Search quality: does the sampler + scheduler find a good model sooner than random search?

Each strategy (sampler, scheduler) runs a real sweep through ``sweeper.launcher`` with the same
wall-clock budget (``time_budget_s``: Ray stops the sweep when it is spent, whatever trials remain)
on the same preset, once per repeat; a repeat's seed sets the data, the models and the sampler,
and the order of the strategies rotates with it, so warm caches and the machine's load favour none.
After the cold sweeps, a TPE+ASHA sweep of each repeat is warm-started from the TPE+ASHA sweep of
the next repeat (another seed: other data and other draws, the same family and search space).

Every epoch's validation metric is read back from MLflow with the time the driver received it
(from the sweep's parent run's start, after data loading), which gives each sweep's best-so-far
curve. Reported, per strategy, as median and range over repeats: the best at the budget, the time
to reach random+FIFO's final best of the same repeat (the reference a user gets with no search at
all) as a fraction of the time random+FIFO took to reach it, and, for warm starts, the trials to
reach the cold sweep's final best as a fraction of the cold sweep's trials.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from mlflow.tracking import MlflowClient

from benchmarks.common import Outcome, Row, Spread, figure, ray_session, rotated, save_figure
from mlflow_server.options import default_tracking_uri
from sweeper.launcher import LaunchOptions, launch
from trainables.families import Family, get_family

STRATEGIES = (("tpe", "asha"), ("tpe", "fifo"), ("random", "asha"), ("random", "fifo"))
REFERENCE = ("random", "fifo")
SEARCH = ("tpe", "asha")
WARM = "warm tpe+asha"
TIME_TARGET = 0.5  # issue 15: TPE+ASHA reaches random+FIFO's final best in at most 50% of its time
WARM_TARGET = 0.3  # issue 15: a warm start reaches the cold sweep's final best in at most 30% of its trials
ANCHOR = "ASHA paper (Li et al., arXiv:1810.05934): a good configuration in about half the time of Vizier (500 workers)"
# (seconds since the sweep started, validation metric, trial number in order of first report)
Point = tuple[float, float, int]


@dataclass(frozen=True)
class Settings:
    family: str
    preset: str
    budget_s: float  # wall clock per sweep
    repeats: int
    max_trials: int  # more than fit in the budget: the budget ends the sweep
    epochs: int | None = None  # None: the preset's
    strategies: tuple[tuple[str, str], ...] = STRATEGIES


SIZES = {
    "tiny": Settings(family="response_time", preset="smoke", budget_s=30, repeats=1, max_trials=2, epochs=2, strategies=(SEARCH, REFERENCE)),
    "quick": Settings(family="response_time", preset="quick", budget_s=60, repeats=2, max_trials=20),
    "default": Settings(family="response_time", preset="quick", budget_s=120, repeats=5, max_trials=40),
}


def label(strategy: tuple[str, str]) -> str:
    return "+".join(strategy)


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    family = get_family(settings.family)
    seeds = list(range(settings.repeats))
    with tempfile.TemporaryDirectory(prefix="benchmark-search-") as folder:
        with ray_session():
            sweeps: dict[int, dict[str, dict[str, Any]]] = {seed: {} for seed in seeds}
            for seed in seeds:
                for strategy in rotated(settings.strategies, seed):
                    sweeps[seed][label(strategy)] = run_sweep(family, settings, strategy, seed, Path(folder))
            for seed in seeds:
                source = f"{label(SEARCH)}-seed{seeds[(seed + 1) % len(seeds)]}"
                sweeps[seed][WARM] = run_sweep(family, settings, SEARCH, seed, Path(folder), warm_start=source)
    comparisons = {seed: compare(family, runs, settings.budget_s) for seed, runs in sweeps.items()}
    plot(family, sweeps, settings, out / "search_quality.png")
    results = {"metric": family.validation_metric, "sweeps": sweeps, "comparisons": comparisons, "anchor": ANCHOR}
    return Outcome(asdict(settings), results, summary(family, comparisons, settings))


def run_sweep(family: Family, settings: Settings, strategy: tuple[str, str], seed: int, folder: Path,
              warm_start: str | None = None) -> dict[str, Any]:  # fmt: skip
    sampler, scheduler = strategy
    name = f"{'warm-' if warm_start else ''}{label(strategy)}-seed{seed}"
    options = LaunchOptions(
        family=family.name, preset=settings.preset, trials=settings.max_trials, epochs=settings.epochs, name=name,
        seed=seed, sampler=sampler, scheduler=scheduler, time_budget_s=settings.budget_s,
        warm_start=(warm_start,) if warm_start else (), max_concurrent=2,
        storage=str(folder / "ray_results"), tracking_uri=default_tracking_uri(folder),
    )  # fmt: skip
    launched = launch(options)
    return {"name": name, "warm_start": warm_start, **history(launched.tracking_uri, family, name)}


def history(tracking_uri: str, family: Family, sweep: str) -> dict[str, Any]:
    """Every reported epoch of the sweep as a Point, in time order."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(family.name)
    runs = client.search_runs([experiment.experiment_id], f"tags.`sweeper.sweep` = '{sweep}'")
    (parent,) = [run for run in runs if run.data.tags["sweeper.kind"] == "sweep"]
    start_ms = parent.info.start_time
    per_trial = [
        [((metric.timestamp - start_ms) / 1000, metric.value) for metric in client.get_metric_history(run.info.run_id, family.validation_metric)]
        for run in runs
        if run.data.tags["sweeper.kind"] == "trial"
    ]
    per_trial = sorted((sorted(points) for points in per_trial if points), key=lambda points: points[0][0])
    points = sorted((time_s, value, number) for number, trial in enumerate(per_trial, 1) for time_s, value in trial)
    return {"points": points, "trials": len(per_trial), "epochs_trained": len(points), "search_s": points[-1][0] if points else math.nan}


def best_so_far(family: Family, points: Sequence[Point]) -> list[Point]:
    """The points that improved on every earlier one."""
    curve: list[Point] = []
    for point in points:
        if not curve or family.is_better(point[1], curve[-1][1]):
            curve.append(tuple(point))
    return curve


def best_at(curve: Sequence[Point], time_s: float) -> float:
    """The best-so-far value at ``time_s`` (NaN before the first result)."""
    earlier = [value for point_s, value, _ in curve if point_s <= time_s]
    return earlier[-1] if earlier else math.nan


def reached(family: Family, curve: Sequence[Point], target: float) -> Point | None:
    """The first point at least as good as ``target``; None if the sweep never got there."""
    return next((point for point in curve if not family.is_better(target, point[1])), None)


def compare(family: Family, runs: dict[str, dict[str, Any]], budget_s: float) -> dict[str, Any]:
    """One repeat: each strategy against random+FIFO's final best, and the warm start against its cold sweep."""
    curves = {name: best_so_far(family, run["points"]) for name, run in runs.items()}
    reference = curves[label(REFERENCE)]
    target = reference[-1][1]
    reference_s = reached(family, reference, target)[0]
    times = {name: (point[0] if (point := reached(family, curve, target)) else math.inf) for name, curve in curves.items()}
    cold, warm = curves[label(SEARCH)], curves[WARM]
    warm_point = reached(family, warm, cold[-1][1])
    return {
        "target": target,
        "final_best": {name: curve[-1][1] for name, curve in curves.items()},
        "best_at_half_budget": {name: best_at(curve, budget_s / 2) for name, curve in curves.items()},
        "time_to_target_s": times,
        "time_to_target_fraction": {name: time_s / reference_s for name, time_s in times.items()},
        "trials": {name: run["trials"] for name, run in runs.items()},
        "epochs_trained": {name: run["epochs_trained"] for name, run in runs.items()},
        "warm_trials_to_cold_best": warm_point[2] if warm_point else math.inf,
        "warm_trials_fraction": (warm_point[2] if warm_point else math.inf) / runs[label(SEARCH)]["trials"],
    }


def summary(family: Family, comparisons: dict[int, dict[str, Any]], settings: Settings) -> list[Row]:
    """Median and range over repeats; a sweep that never reached its target counts as infinitely slow."""
    def across(key: str, name: str) -> Spread:
        return Spread.of([c[key][name] for c in comparisons.values()])

    names = [*map(label, settings.strategies), WARM]
    repeats = f"{len(comparisons)} repeat{'s' if len(comparisons) > 1 else ''}, {settings.budget_s:.0f} s each"
    metric = family.validation_metric
    rows = [Row(f"{name}: final best {metric} / trials ({repeats})", f"{across('final_best', name).show()} / {across('trials', name).show(digits=0)}")
            for name in names]  # fmt: skip
    for name in names[:-1]:
        if name != label(REFERENCE):
            fraction = across("time_to_target_fraction", name)
            goal = name == label(SEARCH)
            rows.append(Row(f"{name}: time to random+fifo's final best / random+fifo's time", fraction.show(),
                            f"<= {TIME_TARGET}" if goal else "", fraction.median <= TIME_TARGET if goal else None))  # fmt: skip
    never = {name: sum(math.isinf(c["time_to_target_s"][name]) for c in comparisons.values()) for name in names}
    rows.append(Row("repeats that never reached random+fifo's final best", ", ".join(f"{n}: {k}" for n, k in never.items() if k) or "none"))
    warm = Spread.of([c["warm_trials_fraction"] for c in comparisons.values()])
    rows.append(Row("warm tpe+asha: trials to the cold sweep's final best / the cold sweep's trials", warm.show(),
                    f"<= {WARM_TARGET}", warm.median <= WARM_TARGET))  # fmt: skip
    return rows


def plot(family: Family, sweeps: dict[int, dict[str, dict[str, Any]]], settings: Settings, path: Path) -> None:
    """Best so far against wall time: the median over repeats, and the range as a band."""
    fig, axes = figure(width=7.0)
    grid = np.linspace(0, settings.budget_s, 200)
    for index, name in enumerate([*map(label, settings.strategies), WARM]):
        curves = np.array([[best_at(best_so_far(family, runs[name]["points"]), t) for t in grid] for runs in sweeps.values()])
        with np.errstate(all="ignore"):
            low, median, high = np.nanmin(curves, 0), np.nanmedian(curves, 0), np.nanmax(curves, 0)
        style = "--" if name == WARM else "-"
        axes.plot(grid, median, style, color=f"C{index}", label=name)
        axes.fill_between(grid, low, high, color=f"C{index}", alpha=0.12)
    axes.set_xlabel("seconds since the sweep started")
    axes.set_ylabel(f"best {family.validation_metric} so far")
    axes.set_title(f"{family.name} ({settings.preset}): median and range over {settings.repeats} repeats")
    axes.legend()
    save_figure(fig, path)
