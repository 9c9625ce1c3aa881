"""Promotion's parallel efficiency: the retraining of candidate and baselines over seeds (issue 19).

A small sweep of the localization family, then ``promote`` with ``--seeds auto`` (rounds of seeds
until the verdict is clear) on local Ray, as ``sweeper promote`` runs it. Ray's timeline gives
the time every retraining and stability-probe task held a worker; the driver's stages (each
round of retraining, the latency and memory measurements between rounds) are timed by wrapping
``sweeper.promotion``'s functions for the run. Ideal = the tasks' worker time / the slots (cores
/ CPUs per task); efficiency = ideal / the wall time of the judging stage (the rounds and what
runs between them; data loading before it and the report and MLflow records after it are timed
apart). The same target as the sweep's orchestration: at least 90 %.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import ray

import sweeper
from benchmarks.common import Outcome, Row, Spread, figure, ray_session, save_figure
from sweeper import promotion
from sweeper.api import Sweep

logger = logging.getLogger(__name__)

FAMILY = "localization"
TARGET_EFFICIENCY = 0.90
TASKS = ("_retrain_task", "_probe_task")
STAGES = ("_judge_in_rounds", "_latencies", "_peak_memory", "_gains")


@dataclass(frozen=True)
class Settings:
    preset: str
    sweep_trials: int
    sweep_epochs: int
    promote_epochs: int
    seeds: int | str  # promote's --seeds
    repeats: int


SIZES = {
    "tiny": Settings(preset="smoke", sweep_trials=2, sweep_epochs=1, promote_epochs=1, seeds=1, repeats=1),
    "quick": Settings(preset="quick", sweep_trials=4, sweep_epochs=3, promote_epochs=4, seeds="auto", repeats=2),
    "default": Settings(preset="quick", sweep_trials=4, sweep_epochs=3, promote_epochs=8, seeds="auto", repeats=3),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="promotion-benchmark-") as folder, ray_session():
        sweep = sweeper.launch(FAMILY, preset=settings.preset, trials=settings.sweep_trials, epochs=settings.sweep_epochs,
                               storage=str(Path(folder) / "results"), tracking_uri=f"sqlite:///{folder}/mlflow.db", name="promoted")  # fmt: skip
        slots = int(ray.cluster_resources()["CPU"] // sweep.record.cpus_per_trial)
        repeats = [promote_once(sweep, settings, slots) for _ in range(settings.repeats)]
    results = {"slots": slots, "repeats": repeats, "efficiency": asdict(Spread.of([r["efficiency"] for r in repeats]))}
    plot(repeats[-1], slots, out / "promotion.png")
    return Outcome(settings=asdict(settings), results=results, summary=summary(repeats))


def promote_once(sweep: Sweep, settings: Settings, slots: int) -> dict[str, Any]:
    """One promotion, its driver stages and its tasks' times, in seconds since it started."""
    stages: list[tuple[str, float, float]] = []
    started = time.time()
    with timed(promotion, STAGES, stages):
        outcome = sweep.promote(seeds=settings.seeds, epochs=settings.promote_epochs)
    tasks = task_spans(started)
    (judge_start, judge_end), = [(start, end) for name, start, end in stages if name == "_judge_in_rounds"]
    judge_wall = judge_end - judge_start
    # Timeline events exist for finished tasks: a next round's run cancelled by a clear verdict has
    # none, but one that finished before the verdict counts although no look used it (see "spare").
    worker_s = sum(end - start for _, start, end in tasks)
    used = outcome.looks[-1][0] * len(outcome.evidence)
    relative = [(name, start - started, end - started) for name, start, end in stages]
    result = {
        "wall_s": outcome.seconds, "judge_wall_s": judge_wall, "worker_s": worker_s, "ideal_s": worker_s / slots,
        "efficiency": worker_s / slots / judge_wall, "looks": outcome.looks, "decision": outcome.verdict.decision,
        "stages": relative, "tasks": tasks, "spare_runs": sum(name == "_retrain_task" for name, _, _ in tasks) - used,
        "driver_s": {name: sum(end - start for stage, start, end in relative if stage == name) for name in STAGES[1:]},
    }  # fmt: skip
    logger.info("promotion: %.1f s, judging %.1f s against an ideal %.1f s (%.0f %%), %d looks",
                outcome.seconds, judge_wall, result["ideal_s"], 100 * result["efficiency"], len(outcome.looks))  # fmt: skip
    return result


@contextlib.contextmanager
def timed(module: Any, names: tuple[str, ...], spans: list[tuple[str, float, float]]) -> Iterator[None]:
    """Wrap ``module``'s functions ``names`` for the block, appending (name, start, end) per call."""

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            try:
                return function(*args, **kwargs)
            finally:
                spans.append((name, start, time.time()))

        return timed_call

    with contextlib.ExitStack() as patches:
        for name in names:
            patches.enter_context(mock.patch.object(module, name, wrap(name, getattr(module, name))))
        yield


def task_spans(since: float) -> list[tuple[str, float, float]]:
    """(task, start, end) in seconds since ``since`` of the promotion's tasks, from Ray's timeline."""
    time.sleep(2.0)  # task events reach the GCS in batches, about every second
    events = [e for e in ray.timeline() if e.get("ph") == "X" and any(e.get("cat", "").endswith(task) for task in TASKS)]
    spans = [(e["cat"].split("::")[-1], e["ts"] / 1e6 - since, (e["ts"] + e["dur"]) / 1e6 - since) for e in events]
    return sorted(span for span in spans if span[1] >= 0)


def summary(repeats: list[dict[str, Any]]) -> list[Row]:
    efficiency = Spread.of([r["efficiency"] for r in repeats])
    return [
        Row("promotion: judging wall", Spread.of([r["judge_wall_s"] for r in repeats]).show("s", digits=1)),
        Row("promotion: ideal (task time / slots)", Spread.of([r["ideal_s"] for r in repeats]).show("s", digits=1)),
        Row("promotion: latency, memory and gains in the driver", Spread.of([sum(r["driver_s"].values()) for r in repeats]).show("s", digits=1)),
        Row("promotion: parallel efficiency", efficiency.show("%", scale=100, digits=1), f">= {TARGET_EFFICIENCY:.0%}",
            efficiency.median >= TARGET_EFFICIENCY),
    ]  # fmt: skip


def plot(result: dict[str, Any], slots: int, path: Path) -> None:
    """The tasks on their slots over time, with the driver's stages above: gaps are idle slots."""
    fig, ax = figure(width=9.0, height=3.5)
    ends = [0.0] * slots
    for name, start, end in result["tasks"]:  # first fit: a slot free at the task's start
        slot = next((i for i, free in enumerate(ends) if free <= start + 1e-3), min(range(slots), key=ends.__getitem__))
        ends[slot] = end
        ax.barh(slot, end - start, left=start, color="tab:blue" if name == "_retrain_task" else "tab:orange", edgecolor="white")
    for name, start, end in result["stages"]:
        if name in STAGES[1:]:
            ax.barh(slots, end - start, left=start, color="tab:red")
    ax.set_yticks(range(slots + 1), [f"slot {i}" for i in range(slots)] + ["driver"])
    ax.set_xlabel("seconds since promote started")
    ax.set_title(f"promotion: retraining (blue), probe (orange), latency, memory and gains (red); efficiency {result['efficiency']:.0%}")
    save_figure(fig, path)
