"""Whether each family's sweep learns its task: the sweep's best network against the family's
non-learned reference (and its seed baselines) on the test split.

Per family, the same two steps a user runs: ``sweeper.launcher`` of a preset, then
``sweeper.promote``, which retrains the sweep's best trial and the baselines from scratch on
several seeds and judges them on the test split that no sweep sees, next to the reference
(least squares, lexical cohesion, an n-gram model, a feature regression) fitted on the training
split. Reported: each model's test metric (mean and spread over seeds), the reference's, the
gain over the reference with its interval, the verdict, the per-slice metric where the family
defines slices (localization: by active receivers), and the wall time of the sweep and of the
promotion. The targets are issue 14's.

Sizes: ``tiny`` (smoke preset, one family, numbers meaningless), ``quick`` (every family's
``quick`` preset), ``default`` (every family's ``standard`` preset: about 30 minutes of sweep
per family on 2 cores, plus its promotion). One family alone:
``python -m benchmarks.learning localization --preset standard``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Outcome, Row, figure, format_table, run_measurement, save_figure
from mlflow_server.options import default_tracking_uri
import sweeper
from sweeper.promotion import REFERENCE
from trainables.families import family_names, get_family


@dataclass(frozen=True)
class Settings:
    preset: str
    families: tuple[str, ...]
    seeds: int  # promotion seeds per model
    trials: int | None = None  # None: the preset's
    epochs: int | None = None


SIZES = {
    "tiny": Settings(preset="smoke", families=("localization",), seeds=1, trials=2, epochs=1),
    "quick": Settings(preset="quick", families=family_names(), seeds=3),
    "default": Settings(preset="standard", families=family_names(), seeds=3),
}

# Issue 14's targets for the standard preset: the most the network's mean test metric may be, as
# a value and as a ratio to the reference's (a ratio above 1 for "max" metrics is never asked).
TARGETS: dict[str, dict[str, float]] = {
    "localization": {"ratio": 0.75},
    "segmentation": {"value": 0.22, "ratio": 0.80},
    "language_model": {"value": 2.0, "ratio": 1.0},
    "response_time": {"value": 0.55, "ratio": 0.90},
}
SLICE_TARGETS = {"localization": {"1-2 receivers": 0.6, "6-10 receivers": 1.2}}  # ratios to the reference


def measure(size: str, out: Path) -> Outcome:
    return run(SIZES[size], out / "learning.png")


def run(settings: Settings, plot_path: Path) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="benchmark-learning-") as folder:
        results = {name: run_family(name, settings, Path(folder)) for name in settings.families}
    plot(results, plot_path)
    return Outcome(asdict(settings), results, summary(results, settings.preset))


def run_family(name: str, settings: Settings, folder: Path) -> dict[str, Any]:
    """Launch a sweep of ``name``, promote it, and keep what the comparison needs."""
    start = time.perf_counter()
    sweep = sweeper.launch(
        name, preset=settings.preset, trials=settings.trials, epochs=settings.epochs, name=f"{name}-{settings.preset}",
        storage=str(folder / "ray_results"), tracking_uri=default_tracking_uri(folder),
    )  # fmt: skip
    launched = sweep.result
    sweep_s = time.perf_counter() - start
    outcome = sweep.promote(seeds=settings.seeds)
    gain = outcome.verdict.reference_gain
    return {
        "metric": outcome.metric,
        "sweep_s": sweep_s,
        "promote_s": outcome.seconds,
        "trials": launched.trials_by_status,
        "best_trial": {"id": launched.best_trial_id, "config": launched.best_config, "validation": launched.best_value},
        "reference_validation": launched.reference,
        "test": {model.name: list(model.test) for model in outcome.evidence},
        "reference_test": outcome.reference,
        "gain_over_reference": asdict(gain) if gain else None,
        "verdict": outcome.verdict.decision,
        "failed_criteria": [criterion.name for criterion in outcome.verdict.failed],
        "slices": outcome.slices,
    }


def summary(results: dict[str, dict[str, Any]], preset: str) -> list[Row]:
    rows = []
    for name, result in results.items():
        metric, candidate = result["metric"], np.asarray(result["test"]["candidate"], dtype=float)
        reference = result["reference_test"].get(metric, float("nan"))
        ratio = float(np.nanmean(candidate)) / reference
        target = TARGETS.get(name, {})
        met = ratio <= target.get("ratio", float("inf")) and np.nanmean(candidate) <= target.get("value", float("inf"))
        wanted = ", ".join(f"<= {target[key]}{suffix}" for key, suffix in (("value", ""), ("ratio", "x reference")) if key in target)
        rows.append(Row(
            f"{name} ({preset}): network / reference test {metric}",
            f"{np.nanmean(candidate):.4g} ± {np.nanstd(candidate):.2g} / {reference:.4g} ({ratio:.2f}x)",
            wanted, bool(met) if target and preset == "standard" else None,
        ))  # fmt: skip
        for slice_name, values in result["slices"].items():
            slice_ratio = values["candidate"] / values[REFERENCE]
            limit = SLICE_TARGETS.get(name, {}).get(slice_name)
            rows.append(Row(f"  {slice_name}: network / reference", f"{values['candidate']:.4g} / {values[REFERENCE]:.4g} ({slice_ratio:.2f}x)",
                            f"<= {limit}x" if limit else "", bool(slice_ratio <= limit) if limit and preset == "standard" else None))  # fmt: skip
        rows.append(Row("  verdict; wall time sweep + promotion", f"{result['verdict']}; {result['sweep_s']:.0f} s + {result['promote_s']:.0f} s",
                        "sweep <= 1800 s" if preset == "standard" else "", result["sweep_s"] <= 1800 if preset == "standard" else None))  # fmt: skip
    return rows


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Every model's test metric per seed, as a ratio to the family's reference (below 1: better
    than the reference, for metrics where lower is better)."""
    fig, axes = figure(width=max(6.0, 2.0 * len(results)))
    for index, (name, result) in enumerate(results.items()):
        reference = result["reference_test"].get(result["metric"], float("nan"))
        for offset, (model, values) in enumerate(result["test"].items()):
            x = index + 0.15 * (offset - (len(result["test"]) - 1) / 2)
            ratios = np.asarray(values, dtype=float) / reference
            axes.scatter([x] * len(ratios), ratios, color=f"C{offset}")
            axes.annotate(model, (x, np.nanmax(ratios)), fontsize=7, rotation=90, va="bottom", ha="center")
    axes.axhline(1.0, color="black", linestyle="--", label="non-learned reference")
    axes.set_xticks(range(len(results)), [f"{name}\n({result['metric']})" for name, result in results.items()])
    axes.set_ylabel("test metric / reference's (per training seed)")
    axes.legend()
    axes.set_xlim(-0.5, len(results) - 0.5)
    axes.set_title("the sweep's best (candidate) and the baselines vs the reference, test split", fontsize=10)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning", description="one family's sweep against its reference")
    parser.add_argument("family", choices=family_names())
    parser.add_argument("--preset", default="standard", help="the family's preset (default: standard)")
    parser.add_argument("--seeds", type=int, default=3, help="promotion seeds per model (default 3)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="results folder (%(default)s)")
    arguments = parser.parse_args(argv)
    get_family(arguments.family)
    settings = Settings(preset=arguments.preset, families=(arguments.family,), seeds=arguments.seeds)
    name = f"learning-{arguments.family}-{arguments.preset}"
    payload = run_measurement(name, lambda _size, out: run(settings, out / f"{name}.png"), arguments.preset, arguments.out)
    print(format_table(("learning", Row(**row)) for row in payload["summary"]))


if __name__ == "__main__":
    main()
