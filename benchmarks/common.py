"""What every benchmark shares: repeated timing with median and spread, the machine and its load,
JSON results, Agg plots and the summary rows.

A shared 2-core machine is noisy: single timings mislead, so every number is a median of repeats
with its quartiles and extremes, and the 1-minute load average is sampled while a benchmark runs
so that a slow result can be told apart from a busy machine.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Spread:
    """Median of repeated measurements with quartiles and extremes: the median resists the odd
    slow repeat a shared machine produces; the rest shows how far to trust it."""

    median: float
    p25: float
    p75: float
    min: float
    max: float
    repeats: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        array = np.asarray(values, dtype=float)
        p25, median, p75 = np.percentile(array, [25, 50, 75])
        return cls(float(median), float(p25), float(p75), float(array.min()), float(array.max()), len(array))

    def show(self, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
        """``median (min-max) unit``, e.g. ``1.23 (1.20-1.31) s``: the median alone for one value,
        n/a for NaN (no value yet)."""
        if math.isnan(self.median):
            return "n/a"
        low, mid, high = (f"{value * scale:.{digits}f}" for value in (self.min, self.median, self.max))
        text = mid if self.repeats == 1 else f"{mid} ({low}-{high})"
        return f"{text} {unit}" if unit else text


def whiskers(spreads: Sequence[Spread]) -> list[list[float]]:
    """Matplotlib's ``yerr`` for bars or points at the medians: down to the min, up to the max."""
    return [[s.median - s.min for s in spreads], [s.max - s.median for s in spreads]]


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """``items`` started at ``shift`` (mod their number): alternating which runs first over repeats,
    so warm caches and the machine's load favour none of them."""
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def seconds(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def time_calls(function: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    return [seconds(function) for _ in range(repeats)]


def time_within(
    function: Callable[[], Any], budget_s: float, min_repeats: int = 3, max_repeats: int = 30
) -> list[float]:
    """As many timed calls as fit in ``budget_s`` (at least ``min_repeats``, at most
    ``max_repeats``) after one warm-up call that also sizes the run; callers skip the points
    where a single call is too slow for that."""
    first = seconds(function)
    repeats = int(min(max_repeats, max(min_repeats, budget_s // max(first, 1e-6))))
    return [seconds(function) for _ in range(repeats)]


@contextlib.contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[None]:
    """Local Ray for one measurement, or the session ``python -m benchmarks all`` keeps up for all
    of them: each start and shutdown costs seconds that no measurement is about. ``num_cpus``
    (default: the machine's) declares virtual CPUs."""
    import ray

    from sweeper.cluster import start_ray

    started = start_ray(None, num_cpus=num_cpus)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count for the block (a trial on one CPU runs with one thread)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_interleaved(
    functions: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time several functions round by round in turn, so whatever else the machine does in the
    meantime affects each of them alike (they are compared with each other)."""
    timings: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(warmup + repeats):
        for name, function in functions.items():
            elapsed = seconds(function)
            if round_index >= warmup:
                timings[name].append(elapsed)
    return timings


# ---------------------------------------------------------------- machine and load


def machine() -> dict[str, Any]:
    """Where the numbers were taken: they mean little without it."""
    packages = ("torch", "ray", "optuna", "mlflow", "numpy")
    return {
        "arch": platform.machine(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(_meminfo_kb("MemTotal") / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **{name: version(name) for name in packages},
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meminfo_kb(field_name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def available_memory_mb() -> float:
    return _meminfo_kb("MemAvailable") / 1024


class LoadMonitor:
    """Samples the 1-minute load average in a background thread while a benchmark runs.

    The load includes the benchmark's own work (about 1 while one thread is timed, about 2 while
    two trials run), so the figure to watch is how far it rises above that.
    """

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> LoadMonitor:
        self.before = os.getloadavg()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.after = os.getloadavg()

    def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval_s):
                return

    def summary(self) -> dict[str, Any]:
        return {
            "before_1_5_15min": list(self.before),
            "after_1_5_15min": list(self.after),
            "during_1min": asdict(Spread.of(self.samples)),
        }


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Row:
    """One line of the summary table: a headline number, and its target where the issue set one."""

    quantity: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass(frozen=True)
class Outcome:
    """What a benchmark's ``measure(size, out)`` returns; plots are already written to ``out``."""

    settings: Mapping[str, Any]
    results: Mapping[str, Any]
    summary: list[Row] = field(default_factory=list)


def run_measurement(name: str, measure: Callable[[str, Path], Outcome], size: str, out: Path) -> dict[str, Any]:
    """Run one benchmark under a load monitor and write ``out/NAME.json``; returns what it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with LoadMonitor() as load:
        start = time.perf_counter()
        outcome = measure(size, out)
        wall_s = time.perf_counter() - start
    payload = {
        "name": name,
        "size": size,
        "started": started,
        "wall_s": wall_s,
        "machine": machine(),
        "load": load.summary(),
        "settings": dict(outcome.settings),
        "results": dict(outcome.results),
        "summary": [asdict(row) for row in outcome.summary],
    }
    write_json(out / f"{name}.json", payload)
    return payload


def write_json(path: Path, payload: Any) -> None:
    """Strict JSON: non-finite numbers become null (a skipped point is not a number)."""
    path.write_text(json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(rows: Iterable[tuple[str, Row]]) -> str:
    """A fixed-width table of (benchmark, row) pairs for the terminal."""
    header = ("benchmark", "quantity", "value", "target", "met")
    met = {True: "yes", False: "NO", None: ""}
    lines = [header] + [(name, row.quantity, row.value, row.target, met[row.met]) for name, row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


# ---------------------------------------------------------------- plots


def figure(columns: int = 1, width: float = 6.0, height: float = 4.0) -> tuple[Any, Any]:
    """A matplotlib figure on the Agg backend (no display needed): one Axes, or a row of them."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    pyplot.style.use("default")  # sweeper's Optuna summary plots switch the process to ggplot
    return pyplot.subplots(1, columns, figsize=(width * columns, height))


def save_figure(fig: Any, path: Path) -> None:
    from matplotlib import pyplot

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
