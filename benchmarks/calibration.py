"""Error rates of the promotion decision on synthetic problems with known truth (sweeper/calibration.py).

For each training-noise level and each number of seeds per model (3, 5, 10 and ``auto``, the
sequential rounds from 3 to 9): how often the decision claims a gain above zero when there is
none (the interval's own false-claim rate, policy threshold 0), how often it promotes at a true
gain equal to the policy's threshold (the false-promotion rate of the threshold test) and at
twice the threshold (its power), and how many seeds ``auto`` used. Each rate is a share of
seeded repetitions, with its Monte-Carlo standard error.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.common import Outcome, Row, figure, save_figure
from sweeper.calibration import NOISE, POLICY, Problem, rates

SEEDS = (3, 5, 10, "auto")
THRESHOLD = POLICY.min_relative_improvement
CASES = {"no gain, claims > 0": 0.0, "gain = threshold": THRESHOLD, "gain = 2 x threshold": 2 * THRESHOLD}


@dataclass(frozen=True)
class Settings:
    repetitions: int
    noise: tuple[str, ...]
    max_seeds: int = 9


SIZES = {
    "tiny": Settings(repetitions=10, noise=("mid",)),
    "quick": Settings(repetitions=200, noise=tuple(NOISE)),
    "default": Settings(repetitions=400, noise=tuple(NOISE)),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    policy = replace(POLICY, max_seeds=settings.max_seeds)
    table: dict[str, Any] = {}
    for case, gain in CASES.items():
        case_policy = replace(policy, min_relative_improvement=0.0) if gain == 0 else policy
        for noise in settings.noise:
            for seeds in SEEDS:
                measured = rates(Problem(true_gain=gain, seed_noise=NOISE[noise]), seeds, case_policy, settings.repetitions)
                table[f"{case} | noise {noise} | seeds {seeds}"] = {**asdict(measured), "monte_carlo_error": measured.monte_carlo_error}
    plot(table, settings, out / "calibration.png")
    results = {"policy": asdict(policy), "problem": asdict(Problem(0.0, 0.0)), "noise_levels": NOISE, "table": table}
    return Outcome(asdict(settings), results, summary(table, settings))


def _rate(table: dict[str, Any], case: str, noise: str, seeds: Any) -> dict[str, Any]:
    return table[f"{case} | noise {noise} | seeds {seeds}"]


def summary(table: dict[str, Any], settings: Settings) -> list[Row]:
    rows = []
    for case in CASES:
        for noise in settings.noise:
            cells = []
            for seeds in SEEDS:
                entry = _rate(table, case, noise, seeds)
                rate = entry["claimed_gain"] if CASES[case] == 0 else entry["promoted"]
                cells.append(f"{seeds}: {rate:.3f}" + (f" ({entry['seeds']:.1f} seeds)" if seeds == "auto" else ""))
            worst = max(_rate(table, case, noise, s)["claimed_gain" if CASES[case] == 0 else "promoted"] for s in SEEDS)
            power = _rate(table, case, noise, "auto")["promoted"]
            if CASES[case] == 2 * THRESHOLD:
                target, met = (">= 0.80 with auto", power >= 0.8) if noise == "mid" else ("", None)
            else:
                error = max(_rate(table, case, noise, s)["monte_carlo_error"] for s in SEEDS)
                target, met = f"<= 0.05 + MC error ({error:.3f})", worst <= 0.05 + error
            rows.append(Row(f"{case}, noise {noise}", "; ".join(cells), target, met))
    return rows


def plot(table: dict[str, Any], settings: Settings, path: Path) -> None:
    fig, axes = figure(columns=len(CASES), width=4.5)
    for column, (case, gain) in zip(axes, CASES.items()):
        key = "claimed_gain" if gain == 0 else "promoted"
        for index, noise in enumerate(settings.noise):
            values = [_rate(table, case, noise, seeds)[key] for seeds in SEEDS]
            errors = [_rate(table, case, noise, seeds)["monte_carlo_error"] for seeds in SEEDS]
            column.errorbar([str(s) for s in SEEDS], values, yerr=errors, marker="o", capsize=3, label=f"noise {noise}", color=f"C{index}")
        if gain != 2 * THRESHOLD:
            column.axhline(1 - POLICY.confidence, color="black", linestyle="--", label="nominal 5%")
        column.set(title=case, xlabel="seeds per model", ylabel="share of repetitions")
        column.legend(fontsize=7)
    save_figure(fig, path)
