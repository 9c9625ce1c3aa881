"""Search quality on a problem whose answer is known: do TPE and ASHA beat random search and FIFO
when a config's quality is not buried in seed noise?

On the real families at quick sizes a config's validation metric varies more between model seeds
than between good configs (BENCHMARKS.md), so a sweep's best-so-far measures luck. Here each trial
is a known function: its final loss is 1 + f(config) (a quadratic bowl in log learning rate and
dropout, a batch-size term, three architectures, one with a conditional width), its learning curve
(1 + f) x (1 + 2 / epoch) ranks trials early as they rank late (what ASHA assumes), with Gaussian
noise of a chosen size on every report, and an epoch lasts ``epoch_s`` of sleep (no CPU: the
wall clock is the sweep machinery's and the trials'). The same build_tuner and strategies as a
real sweep (OptunaSearch, ConcurrencyLimiter, Ray Tune schedulers, checkpoints, time budget).

Scored on truth: at each moment the incumbent is the trial with the best observed loss so far
(what a user would pick); its true final loss 1 + f is the curve. Per repeat: the time until each
strategy's incumbent is at least as good as random+FIFO's final one, over the time random+FIFO
took, and the true loss at the budget; median and range over repeats.
"""
from __future__ import annotations

import math
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ray import tune

from benchmarks.common import Outcome, Row, Spread, figure, ray_session, rotated, save_figure
from search_spaces import SearchSpace, parse_search_space
from sweeper.launcher import build_tuner
from sweeper.objectives import Objective
from sweeper.strategies import SAMPLERS, SCHEDULERS, Budget, create

STRATEGIES = (("tpe", "asha"), ("tpe", "fifo"), ("random", "asha"), ("random", "fifo"))
REFERENCE, SEARCH = "random+fifo", "tpe+asha"
TARGET = 0.5  # issue 15's: TPE+ASHA at random+FIFO's final best in at most half its time
METRIC = Objective("loss", "min")
SPACE = {
    "family": "synthetic",
    "parameters": {
        "architecture": {"type": "categorical", "choices": ["plain", "wide", "deep"]},
        "width": {"type": "int", "low": 16, "high": 512, "log": True, "when": {"architecture": "wide"}},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "learning_rate": {"type": "float", "low": 1.0e-5, "high": 1.0e-1, "log": True},
        "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    },
}
ARCHITECTURE_COST = {"plain": 0.3, "wide": 0.0, "deep": 0.15}
BATCH_COST = {16: 0.1, 32: 0.0, 64: 0.05, 128: 0.15}


@dataclass(frozen=True)
class Settings:
    budget_s: float
    repeats: int
    epochs: int
    epoch_s: float
    noise: float  # sd of each report, in loss units (the optimum is 1.0; a random config about 1.6)
    slots: int
    strategies: tuple[tuple[str, str], ...] = STRATEGIES


SIZES = {
    "tiny": Settings(budget_s=4, repeats=1, epochs=2, epoch_s=0.02, noise=0.01, slots=2, strategies=(("tpe", "asha"), ("random", "fifo"))),
    "quick": Settings(budget_s=30, repeats=2, epochs=9, epoch_s=0.2, noise=0.01, slots=2),
    "default": Settings(budget_s=45, repeats=5, epochs=9, epoch_s=0.2, noise=0.01, slots=2),
}


def true_loss(config: Mapping[str, Any]) -> float:
    """1 + f(config): 1.0 at the optimum (wide, width 128, dropout 0.1, learning rate 3e-3, batch 32)."""
    f = 0.25 * (math.log10(config["learning_rate"]) - math.log10(3e-3)) ** 2 + 2.0 * (config["dropout"] - 0.1) ** 2
    f += ARCHITECTURE_COST[config["architecture"]] + BATCH_COST[config["batch_size"]]
    if config["architecture"] == "wide":
        f += 0.05 * (math.log2(config["width"]) - 7) ** 2
    return 1.0 + f


def trial(config: dict[str, Any], *, settings: Settings, seed: int) -> None:
    rng = np.random.default_rng([seed, zlib.crc32(repr(sorted(config.items())).encode())])
    final = true_loss(config)
    for epoch in range(1, settings.epochs + 1):
        time.sleep(settings.epoch_s)
        observed = final * (1 + 2 / epoch) + rng.normal(0, settings.noise)
        tune.report({"loss": observed, "true_loss": final, "epoch": epoch, "wall": time.time()})


def space() -> SearchSpace:
    takes = {"plain": (), "wide": ("width",), "deep": ()}
    return parse_search_space(SPACE, __file__, "synthetic", tuple(takes), takes.__getitem__, ("learning_rate", "batch_size", "dropout"))


def run_sweep(settings: Settings, strategy: tuple[str, str], seed: int, folder: Path) -> tuple[list[tuple[float, float, float]], int]:
    """(seconds since fit started, observed loss, true loss) of every report, in time order; the trials run."""
    sampler, scheduler = strategy
    budget = Budget(trials=500, epochs=settings.epochs, seed=seed)
    trainable = tune.with_resources(tune.with_parameters(trial, settings=settings, seed=seed), {"cpu": 1})
    tuner = build_tuner(
        trainable, space(), (METRIC,), trials=500, sampler=create(SAMPLERS, sampler, budget, {}),
        scheduler=create(SCHEDULERS, scheduler, budget, {}), max_concurrent=settings.slots, max_failures=0,
        storage=str(folder), name=f"{sampler}+{scheduler}-{seed}", callbacks=[], time_budget_s=settings.budget_s,
    )  # fmt: skip
    started = time.time()
    grid = tuner.fit()
    reports = [row for result in grid if result.metrics_dataframe is not None for row in result.metrics_dataframe.itertuples()]
    return sorted((row.wall - started, row.loss, row.true_loss) for row in reports), len(grid)


def incumbent_curve(reports: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
    """(time, true loss of the trial with the best observed loss so far), at each change."""
    curve, best_observed = [], math.inf
    for time_s, observed, truth in reports:
        if observed < best_observed:
            best_observed = observed
            if not curve or truth != curve[-1][1]:
                curve.append((time_s, truth))
    return curve


def truth_at(curve: list[tuple[float, float]], time_s: float) -> float:
    earlier = [truth for t, truth in curve if t <= time_s]
    return earlier[-1] if earlier else math.nan


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    curves: dict[int, dict[str, list[tuple[float, float]]]] = {}
    trials: dict[int, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="benchmark-synthetic-") as folder:
        with ray_session():
            for seed in range(settings.repeats):
                curves[seed], trials[seed] = {}, {}
                for strategy in rotated(settings.strategies, seed):
                    reports, trials[seed]["+".join(strategy)] = run_sweep(settings, strategy, seed, Path(folder))
                    curves[seed]["+".join(strategy)] = incumbent_curve(reports)
    comparisons = {seed: compare(runs, settings) for seed, runs in curves.items()}
    plot(curves, settings, out / "synthetic_search.png")
    results = {"curves": curves, "comparisons": comparisons, "trials": trials}
    return Outcome(asdict(settings), results, summary(comparisons, settings))


def compare(runs: dict[str, list[tuple[float, float]]], settings: Settings) -> dict[str, Any]:
    """A sweep whose budget ended before its first report (possible at the tiny size) counts as NaN."""
    target = runs[REFERENCE][-1][1] if runs[REFERENCE] else math.nan
    reference_s = next((t for t, truth in runs[REFERENCE] if truth <= target), math.nan)
    times = {name: next((t for t, truth in curve if truth <= target), math.inf) for name, curve in runs.items()}
    return {
        "target_true_loss": target,
        "time_to_target_s": times,
        "fraction_of_reference_time": {name: t / reference_s for name, t in times.items()},
        "true_loss_at_budget": {name: curve[-1][1] if curve else math.nan for name, curve in runs.items()},
        "true_loss_at_half_budget": {name: truth_at(curve, settings.budget_s / 2) for name, curve in runs.items()},
    }


def summary(comparisons: dict[int, dict[str, Any]], settings: Settings) -> list[Row]:
    def across(key: str, name: str) -> Spread:
        return Spread.of([c[key][name] for c in comparisons.values()])

    repeats = f"{len(comparisons)} repeats, {settings.budget_s:.0f} s, noise {settings.noise}"
    rows = [Row(f"{name}: true loss of the pick at the budget / at half ({repeats})",
                f"{across('true_loss_at_budget', name).show(digits=3)} / {across('true_loss_at_half_budget', name).show(digits=3)}")
            for name in map("+".join, settings.strategies)]  # fmt: skip
    for name in map("+".join, settings.strategies):
        if name != REFERENCE:
            fraction = across("fraction_of_reference_time", name)
            goal = name == SEARCH
            rows.append(Row(f"{name}: time to random+fifo's final pick / random+fifo's time", fraction.show(),
                            f"<= {TARGET}" if goal else "", fraction.median <= TARGET if goal else None))  # fmt: skip
    return rows


def plot(curves: dict[int, dict[str, list[tuple[float, float]]]], settings: Settings, path: Path) -> None:
    fig, axes = figure(width=7.0)
    grid = np.linspace(0, settings.budget_s, 200)
    for index, name in enumerate(map("+".join, settings.strategies)):
        values = np.array([[truth_at(runs[name], t) for t in grid] for runs in curves.values()])
        with np.errstate(all="ignore"):
            axes.plot(grid, np.nanmedian(values, 0), color=f"C{index}", label=name)
            axes.fill_between(grid, np.nanmin(values, 0), np.nanmax(values, 0), color=f"C{index}", alpha=0.12)
    axes.set_xlabel("seconds since the sweep started")
    axes.set_ylabel("true loss of the pick so far (optimum 1.0)")
    axes.set_title(f"Known-truth problem: median and range over {settings.repeats} repeats")
    axes.legend()
    save_figure(fig, path)
