"""Multi-objective search: does a sweep of (error, cost) find a better trade-off than a sweep of the
error alone, in the same wall-clock time?

Per repeat (seed), two real sweeps through ``sweeper.launcher`` with the same sampler (TPE), the same
scheduler (FIFO: ASHA would rank by the error alone) and the same time budget: one with the
family's default objectives, one with its main metric only. Both are scored the same way: the
hypervolume of their usable trials' (best validation error, cost) points against one reference
point per repeat (the worst value of each objective over both sweeps, pushed 10% of its range out),
so the single-objective sweep's points count as a front too. The order of the two alternates.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from benchmarks.common import Outcome, Row, Spread, figure, ray_session, rotated, save_figure
from mlflow_server.options import default_tracking_uri
from sweeper.launcher import LaunchOptions, launch
from sweeper.objectives import hypervolume, pareto_mask, reference_point, resolve_objectives
from sweeper.sweep_artifacts import TRIAL_TABLE
from sweeper.sweeps import load_record
from trainables.families import Family, get_family

TARGET = 1.2  # issue 15: the multi-objective front's hypervolume at least 20% higher
KINDS = ("several", "one")  # objectives: the family's default pair, the main metric alone


@dataclass(frozen=True)
class Settings:
    family: str
    preset: str
    budget_s: float
    repeats: int
    max_trials: int
    epochs: int | None = None


SIZES = {
    "tiny": Settings(family="response_time", preset="smoke", budget_s=30, repeats=1, max_trials=2, epochs=2),
    "quick": Settings(family="response_time", preset="quick", budget_s=60, repeats=2, max_trials=20),
    "default": Settings(family="response_time", preset="quick", budget_s=120, repeats=3, max_trials=40),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    family = get_family(settings.family)
    objectives = resolve_objectives(family, ("default",))
    points: dict[int, dict[str, list[list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="benchmark-pareto-") as folder:
        with ray_session():
            for seed in range(settings.repeats):
                points[seed] = {kind: run_sweep(family, settings, kind, seed, Path(folder)) for kind in rotated(KINDS, seed)}
    comparisons = {seed: compare(objectives, runs) for seed, runs in points.items()}
    plot(family, objectives, points[0], out / "pareto.png")
    results = {"objectives": [o.name for o in objectives], "points": points, "comparisons": comparisons}
    return Outcome(asdict(settings), results, summary(comparisons, settings))


def run_sweep(family: Family, settings: Settings, kind: str, seed: int, folder: Path) -> list[list[float]]:
    """The (best validation error, cost) of every usable trial of one sweep."""
    name = f"{kind}-seed{seed}"
    options = LaunchOptions(
        family=family.name, preset=settings.preset, trials=settings.max_trials, epochs=settings.epochs, name=name, seed=seed,
        objectives=("default",) if kind == "several" else (), sampler="tpe", scheduler="fifo", time_budget_s=settings.budget_s,
        max_concurrent=2, storage=str(folder / "ray_results"), tracking_uri=default_tracking_uri(folder),
    )  # fmt: skip
    launch(options)
    rows = pq.read_table(load_record(name, options.storage).journal_dir / "summary" / TRIAL_TABLE).to_pandas()
    usable = rows[rows["status"].isin(["completed", "early_stopped"]) & rows[f"best_{family.validation_metric}"].notna()]
    return usable[[f"best_{family.validation_metric}", family.cost]].to_numpy().tolist()


def compare(objectives, runs: dict[str, list[list[float]]]) -> dict[str, Any]:
    reference = reference_point(np.array(runs["several"] + runs["one"]), objectives)
    volumes = {kind: hypervolume(np.array(values), objectives, reference) for kind, values in runs.items()}
    return {
        "reference": reference.tolist(),
        "hypervolume": volumes,
        "ratio": volumes["several"] / volumes["one"] if volumes["one"] > 0 else float("inf"),
        "trials": {kind: len(values) for kind, values in runs.items()},
        "front_size": {kind: int(pareto_mask(np.array(values), objectives).sum()) for kind, values in runs.items()},
    }


def summary(comparisons: dict[int, dict[str, Any]], settings: Settings) -> list[Row]:
    def across(key: str, kind: str) -> Spread:
        return Spread.of([c[key][kind] for c in comparisons.values()])

    ratio = Spread.of([c["ratio"] for c in comparisons.values()])
    repeats = f"{len(comparisons)} repeat{'s' if len(comparisons) > 1 else ''}, {settings.budget_s:.0f} s each"
    return [
        Row(f"hypervolume, two objectives / one ({repeats})", f"{across('hypervolume', 'several').show(digits=4)} / {across('hypervolume', 'one').show(digits=4)}"),
        Row("hypervolume ratio, two objectives over one", ratio.show("x"), f">= {TARGET}x", ratio.median >= TARGET),
        Row("trials / front members, two objectives", f"{across('trials', 'several').show(digits=0)} / {across('front_size', 'several').show(digits=0)}"),
        Row("trials / front members, one objective", f"{across('trials', 'one').show(digits=0)} / {across('front_size', 'one').show(digits=0)}"),
    ]  # fmt: skip


def plot(family: Family, objectives, runs: dict[str, list[list[float]]], path: Path) -> None:
    """Every trial of the first repeat, the fronts joined by steps."""
    fig, axes = figure(width=7.0)
    for index, (kind, values) in enumerate(sorted(runs.items())):
        points = np.array(values).reshape(-1, 2)
        front = points[pareto_mask(points, objectives)]
        front = front[np.argsort(front[:, 1])]
        label = "two objectives" if kind == "several" else "error alone"
        axes.scatter(points[:, 1], points[:, 0], color=f"C{index}", alpha=0.5, label=f"{label}: trials")
        axes.step(front[:, 1], front[:, 0], where="post", color=f"C{index}", label=f"{label}: front")
    axes.set_xscale("log")
    axes.set_xlabel(family.cost)
    axes.set_ylabel(f"best {family.validation_metric}")
    axes.set_title(f"{family.name}: trials and fronts of one repeat, same time budget")
    axes.legend()
    save_figure(fig, path)
