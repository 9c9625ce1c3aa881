"""Early-stopping value: ASHA against FIFO on the same search budget, through ``sweeper.launch``.

Both schedulers run real localization sweeps with the same preset, number of trials, epochs and
seed (hence the same data split and sampler seed) on one local Ray session. Each sweep's result
history is read back from MLflow: every epoch's validation metric carries the time the driver
received it, measured from the sweep's parent run's start (after data loading, before the Tuner).
From the best-so-far curves: the search time, the time to reach a target (the worse of the two
sweeps' final bests, which both reach by construction) and the best value at equal wall time
(when the shorter sweep ended). The Tuner is asynchronous and the machine shared, so several
seeds give the spread; with a small preset the sweeps are short and the difference is small.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient

from benchmarks.common import Outcome, Row, Spread, figure, save_figure
from mlflow_server.options import default_tracking_uri
from sweeper.cluster import start_ray
from sweeper.launch import LaunchOptions, launch
from trainables.families import Family, get_family

FAMILY = "localization"
SCHEDULERS = ("asha", "fifo")
ANCHOR = "ASHA paper (Li et al., arXiv:1810.05934): a good configuration in about half the time of Vizier (500 workers)"


@dataclass(frozen=True)
class Settings:
    preset: str
    trials: int | None  # None: the preset's
    epochs: int | None  # None: the preset's
    seeds: tuple[int, ...]


SIZES = {
    "tiny": Settings(preset="smoke", trials=2, epochs=2, seeds=(0,)),
    "quick": Settings(preset="quick", trials=6, epochs=3, seeds=(0,)),
    "default": Settings(preset="quick", trials=None, epochs=None, seeds=(0, 1)),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    family = get_family(FAMILY)
    with tempfile.TemporaryDirectory(prefix="benchmark-early-stopping-") as folder:
        start_ray(None)
        try:
            sweeps: dict[int, dict[str, dict[str, Any]]] = {}
            for seed in settings.seeds:
                sweeps[seed] = {s: run_sweep(family, s, seed, settings, Path(folder)) for s in _order(seed)}
        finally:
            ray.shutdown()
    comparisons = {seed: compare(family, runs) for seed, runs in sweeps.items()}
    results = {"metric": family.validation_metric, "sweeps": sweeps, "comparisons": comparisons, "anchor": ANCHOR}
    plot(family, sweeps, out / "early_stopping.png")
    return Outcome(asdict(settings), results, summary(family, comparisons))


def _order(seed: int) -> tuple[str, ...]:
    """Alternate which scheduler goes first, so warm caches favour neither."""
    return SCHEDULERS if seed % 2 == 0 else SCHEDULERS[::-1]


def run_sweep(family: Family, scheduler: str, seed: int, settings: Settings, folder: Path) -> dict[str, Any]:
    name = f"{scheduler}-seed{seed}"
    options = LaunchOptions(
        family=family.name, preset=settings.preset, trials=settings.trials, epochs=settings.epochs, name=name,
        seed=seed, scheduler=scheduler, storage=str(folder / "ray_results"), tracking_uri=default_tracking_uri(folder),
    )  # fmt: skip
    launched = launch(options)
    return {"name": name, **history(launched.tracking_uri, family, name)}


def history(tracking_uri: str, family: Family, sweep: str) -> dict[str, Any]:
    """Every reported epoch as (seconds since the sweep's start, value), in time order."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(family.name)
    runs = client.search_runs([experiment.experiment_id], f"tags.`sweeper.sweep` = '{sweep}'")
    (parent,) = [run for run in runs if run.data.tags["sweeper.kind"] == "sweep"]
    trials = [run for run in runs if run.data.tags["sweeper.kind"] == "trial"]
    start_ms = parent.info.start_time
    points = sorted(
        ((metric.timestamp - start_ms) / 1000, metric.value)
        for trial in trials
        for metric in client.get_metric_history(trial.info.run_id, family.validation_metric)
    )
    statuses = [trial.data.tags.get("sweeper.status", "unknown") for trial in trials]
    return {"points": points, "epochs_trained": len(points), "search_s": points[-1][0],
            "statuses": {status: statuses.count(status) for status in sorted(set(statuses))}}  # fmt: skip


def best_so_far(family: Family, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    curve: list[tuple[float, float]] = []
    for time_s, value in points:
        if not curve or family.is_better(value, curve[-1][1]):
            curve.append((time_s, value))
    return curve


def best_at(curve: list[tuple[float, float]], time_s: float) -> float:
    """The best-so-far value at ``time_s`` (NaN before the first result)."""
    earlier = [value for point_s, value in curve if point_s <= time_s]
    return earlier[-1] if earlier else float("nan")


def compare(family: Family, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One seed: time to the common target, and each scheduler's best when the shorter sweep ended."""
    curves = {scheduler: best_so_far(family, run["points"]) for scheduler, run in runs.items()}
    finals = {scheduler: curve[-1][1] for scheduler, curve in curves.items()}
    target = max(finals.values()) if family.mode == "min" else min(finals.values())
    reached = {s: next(t for t, value in curve if not family.is_better(target, value)) for s, curve in curves.items()}
    equal_s = min(run["search_s"] for run in runs.values())
    return {
        "target": target,
        "final_best": finals,
        "time_to_target_s": reached,
        "speedup_to_target": reached["fifo"] / reached["asha"],
        "equal_time_s": equal_s,
        "best_at_equal_time": {scheduler: best_at(curve, equal_s) for scheduler, curve in curves.items()},
        "search_s": {scheduler: run["search_s"] for scheduler, run in runs.items()},
        "epochs_trained": {scheduler: run["epochs_trained"] for scheduler, run in runs.items()},
    }


def summary(family: Family, comparisons: dict[int, dict[str, Any]]) -> list[Row]:
    def both(key: str, unit: str = "", digits: int = 2) -> str:
        """``ASHA / FIFO``, each the median (and range) over seeds."""
        spreads = [Spread.of([c[key][scheduler] for c in comparisons.values()]) for scheduler in SCHEDULERS]
        return " / ".join(spread.show(unit, digits=digits) for spread in spreads)

    seeds = f"{len(comparisons)} seed{'s' if len(comparisons) > 1 else ''}"
    speedup = Spread.of([c["speedup_to_target"] for c in comparisons.values()])
    metric = family.validation_metric
    return [
        Row(f"search wall ASHA / FIFO ({seeds})", both("search_s", "s", 0)),
        Row("epochs trained ASHA / FIFO", both("epochs_trained", digits=0)),
        Row("time to common target ASHA / FIFO", both("time_to_target_s", "s", 0)),
        Row("speed-up to target (FIFO time / ASHA time)", speedup.show("x"), "anchor ~2x (ASHA paper)"),
        Row(f"best {metric} when the shorter sweep ended ASHA / FIFO", both("best_at_equal_time")),
        Row(f"final best {metric} ASHA / FIFO", both("final_best")),
    ]


def plot(family: Family, sweeps: dict[int, dict[str, dict[str, Any]]], path: Path) -> None:
    fig, axes = figure()
    for index, (seed, runs) in enumerate(sweeps.items()):
        for scheduler, style in zip(SCHEDULERS, ("-", "--")):
            curve = best_so_far(family, runs[scheduler]["points"])
            curve.append((runs[scheduler]["search_s"], curve[-1][1]))  # flat until the sweep's last result
            label = f"{scheduler.upper()} seed {seed}"
            axes.step(*zip(*curve), where="post", linestyle=style, color=f"C{index}", label=label)
    axes.set_xlabel("seconds since the sweep started")
    axes.set_ylabel(f"best {family.validation_metric} so far")
    axes.set_title(f"{family.name}: ASHA vs FIFO, same trials and epochs")
    axes.legend()
    save_figure(fig, path)
