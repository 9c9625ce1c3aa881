"""Attention scaling: time and peak memory of every mechanism against sequence length, on CPU.

Each mechanism is built through the registry (``create_attention``) at width 128 with 4 heads
(sparse attention has no heads option) and run on batch 1 of standard-normal inputs.

Peak memory, first: one fresh process per (mechanism, length), ``python -m benchmarks.attention
JOB``, with sweeper.memory's /proc method (the resident-set high-water mark is reset through
``/proc/self/clear_refs`` after a warm-up pass; the peak is the mark after the pass minus the
resident set before it). Each process measures a forward pass (eval, no gradients), then a
forward+backward pass; glibc's mmap threshold is pinned at 64 KiB there, so the memory the first
pass frees goes back to the system and the second starts from a clean baseline. The address
space is capped, so a point that needs more than the cap fails in its own process instead of
swapping or pushing a neighbour out. Two probes run at a time (nothing is timed meanwhile).

Time, second, in this process on one thread: forward and forward+backward wall time, as many
repeats as fit the point's time budget (median and spread). A point is skipped, and with it the
longer lengths of that mechanism, when one forward+backward pass takes (or, extrapolated from the
two shorter lengths, would take) more than a quarter of the budget, or more memory than the cap.
These in-process timings decide what is too slow to time: the probes' single passes run two at
a time, cold, under the pinned mmap threshold, and took up to 4x longer, so a probe is only
skipped when extrapolated past twice the budget, and has a timeout.

Performer's approximation error: relative error of the softmax-kernel (FAVOR+) Performer's output
against exact softmax attention with the same projections, per number of random features, over
several feature draws. Uniform attention (every weight 1/N) is the reference: an approximation
no better than it has lost what attention is for.
"""
from __future__ import annotations

import json
import logging
import math
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from benchmarks.common import (
    Outcome, Row, Spread, available_memory_mb, figure, save_figure, seconds, time_within, torch_threads, whiskers,
)  # fmt: skip
from sweeper.memory import WARMUP_LENGTH, reset_peak, status_kb
from trainables.attention import create_attention

logger = logging.getLogger(__name__)

DIM, HEADS, BATCH = 128, 4, 1
MEMORY_CAP_MB = 6000.0  # and at most a quarter of the memory available when the run starts
MIN_REPEATS = 3
REPOSITORY = Path(__file__).resolve().parents[1]
Points = dict[int, dict[str, Any]]  # sequence length -> measurements, or {"skipped": why}


@dataclass(frozen=True)
class Mechanism:
    label: str
    kind: str
    options: Mapping[str, Any]

    def build(self) -> nn.Module:
        return create_attention(self.kind, DIM, **self.options)


MECHANISMS = (
    Mechanism("softmax (SDPA)", "softmax", {"heads": HEADS}),
    *(Mechanism(f"performer m={m}", "performer", {"heads": HEADS, "nb_features": m}) for m in (32, 64, 256)),
    *(Mechanism(f"sparse s={s}", "sparse", {"scale_factor": s}) for s in (0.02, 0.1, 0.5)),
    *(Mechanism(f"localized w={w}", "localized", {"heads": HEADS, "window_size": w}) for w in (7, 31)),
    *(Mechanism(f"tiled t={t}", "tiled", {"heads": HEADS, "tile_size": t}) for t in (32, 128, "adaptive")),
    Mechanism("hyperbolic", "hyperbolic", {"heads": HEADS}),
)
DENSE = MECHANISMS[0]


@dataclass(frozen=True)
class Settings:
    lengths: tuple[int, ...]
    budget_s: float  # per (mechanism, length): forward and forward+backward repeats together
    max_repeats: int
    mechanisms: tuple[str, ...]  # labels
    # Performer's error: (length, input scale) cases; x ~ N(0, scale^2), so scale 1 is what a
    # LayerNorm feeds the attention, and 2 gives larger query and key norms (peakier attention)
    error_cases: tuple[tuple[int, float], ...]
    error_features: tuple[int, ...]
    error_draws: int


ALL = tuple(m.label for m in MECHANISMS)
FEATURES = (16, 32, 64, 128, 256, 512)
SIZES = {
    "tiny": Settings((64, 128), 0.2, 3, (DENSE.label, "localized w=7"), ((64, 1.0),), (16, 32), 2),
    "quick": Settings(tuple(2**p for p in range(6, 11)), 3.0, 10, ALL, ((256, 1.0), (256, 2.0)), FEATURES, 3),
    "default": Settings(
        tuple(2**p for p in range(6, 15)), 30.0, 20, ALL, ((256, 1.0), (256, 2.0), (1024, 1.0)), FEATURES, 5
    ),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    mechanisms = [m for m in MECHANISMS if m.label in settings.mechanisms]
    cap_mb = min(MEMORY_CAP_MB, available_memory_mb() / 4)
    with ThreadPoolExecutor(max_workers=2) as pool:
        swept = pool.map(lambda mechanism: memory_sweep(mechanism, settings, cap_mb), mechanisms)
        memory = {mechanism.label: points for mechanism, points in zip(mechanisms, swept)}
    with torch_threads(1):
        timing = {m.label: time_sweep(m, settings, memory[m.label]) for m in mechanisms}
        error = {f"N={n}, x scale {scale:g}": performer_error(n, scale, settings) for n, scale in settings.error_cases}
    crossovers = {m.label: crossover(timing[DENSE.label], timing[m.label]) for m in mechanisms if m is not DENSE}
    plot_scaling(memory, timing, out / "attention.png")
    plot_error(error, out / "attention-performer-error.png")
    results = {"memory_cap_mb": cap_mb, "memory": memory, "timing": timing, "crossover": crossovers,
               "performer_error": error}  # fmt: skip
    described = {**asdict(settings), "dim": DIM, "heads": HEADS, "batch": BATCH, "threads": 1,
                 "mechanisms": {m.label: {"kind": m.kind, **m.options} for m in mechanisms}}  # fmt: skip
    return Outcome(described, results, summary(settings, timing, memory, crossovers, error))


# ---------------------------------------------------------------- peak memory, a fresh process per point


def memory_sweep(mechanism: Mechanism, settings: Settings, cap_mb: float) -> Points:
    """Ascending lengths until one is skipped (over the memory cap, or a probe slower than twice
    the budget); the longer ones are skipped for the same reason."""
    points: Points = {}
    skipped = None
    for length in settings.lengths:
        skipped = (skipped or _extrapolated_skip(points, length, "forward_backward_mb", cap_mb, "MB")
                   or _extrapolated_skip(points, length, "forward_backward_s", 2 * settings.budget_s, "s"))  # fmt: skip
        points[length] = {"skipped": skipped} if skipped else probe(mechanism, length, settings.budget_s, cap_mb)
        skipped = points[length].get("skipped")
        logger.info("memory %s N=%d: %s", mechanism.label, length, points[length])
    return points


def _extrapolated_skip(points: Points, length: int, key: str, limit: float, unit: str) -> str | None:
    """Why to skip ``length`` if ``key`` (a number or a Spread's dict), extrapolated from the two
    previous lengths with a power law of exponent in [1, 2], would exceed ``limit``."""
    if len(points) < 2:
        return None
    (short, first), (long, last) = sorted(points.items())[-2:]
    low, high = max(_value(first[key]), 1e-9), max(_value(last[key]), 1e-9)
    exponent = min(2.0, max(1.0, math.log(high / low) / math.log(long / short)))
    if high * (length / long) ** exponent > limit:
        return f"skipped: forward+backward predicted > {limit:.4g} {unit}"
    return None


def probe(mechanism: Mechanism, length: int, budget_s: float, cap_mb: float) -> dict[str, Any]:
    """Peak MB and single-pass seconds of forward and forward+backward, from a fresh process."""
    job = json.dumps({"kind": mechanism.kind, "options": dict(mechanism.options), "length": length, "cap_mb": cap_mb})
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    timeout_s = 60 + 4 * budget_s
    command = [sys.executable, "-m", "benchmarks.attention", job]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environment,
                                   cwd=REPOSITORY)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"skipped": f"skipped: memory probe > {timeout_s:.0f} s"}
    if completed.returncode != 0:
        return {"skipped": f"failed: exit code {completed.returncode}: {completed.stderr.strip()[-300:]}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _probe_in_this_process(job: Mapping[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    module = create_attention(job["kind"], DIM, **job["options"])
    module(torch.randn(BATCH, WARMUP_LENGTH, DIM)).sum().backward()  # load kernels and libraries first
    module.zero_grad(set_to_none=True)
    x = torch.randn(BATCH, job["length"], DIM)
    address_space = int(status_kb("VmSize") * 1024 + job["cap_mb"] * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:
        forward_mb, forward_s = _peak(lambda: _forward(module, x))
        backward_mb, backward_s = _peak(lambda: _forward_backward(module, x))
    except (RuntimeError, MemoryError):  # torch's allocator failing under the cap
        return {"skipped": f"skipped: > {job['cap_mb']:.0f} MB"}
    return {"forward_mb": forward_mb, "forward_s": forward_s,
            "forward_backward_mb": backward_mb, "forward_backward_s": backward_s}  # fmt: skip


def _peak(function: Callable[[], Any]) -> tuple[float, float]:
    """(peak MB above the resident set before, seconds) of one call."""
    before_kb = status_kb("VmRSS")
    if not reset_peak():
        raise OSError("/proc/self/clear_refs is not writable: no peak-memory measurement on this system")
    elapsed = seconds(function)
    return (status_kb("VmHWM") - before_kb) / 1024, elapsed


# ---------------------------------------------------------------- time, in this process


def time_sweep(mechanism: Mechanism, settings: Settings, memory: Points) -> Points:
    """Forward and forward+backward timings at ascending lengths, until the memory probe skipped
    one or one forward+backward pass takes (or would take) more than a quarter of the budget."""
    limit_s = settings.budget_s / (1 + MIN_REPEATS)
    points: Points = {}
    skipped = None
    for length, probed in memory.items():
        skipped = skipped or probed.get("skipped")
        skipped = skipped or _extrapolated_skip(points, length, "forward_backward_s", limit_s, "s")
        points[length] = {"skipped": skipped} if skipped else time_point(mechanism, length, settings, limit_s)
        skipped = points[length].get("skipped")
    return points


def time_point(mechanism: Mechanism, length: int, settings: Settings, limit_s: float) -> dict[str, Any]:
    """Median and spread of both passes, each given half the budget, after one forward+backward
    pass that must take at most ``limit_s``."""
    torch.manual_seed(0)
    module, x = mechanism.build(), torch.randn(BATCH, length, DIM)
    first_s = seconds(partial(_forward_backward, module, x))
    if first_s > limit_s:
        return {"skipped": f"skipped: forward+backward took {first_s:.3g} s > {limit_s:.4g} s"}
    budget_s = settings.budget_s / 2
    point = {
        name: asdict(Spread.of(time_within(partial(run, module, x), budget_s, MIN_REPEATS, settings.max_repeats)))
        for name, run in (("forward_s", _forward), ("forward_backward_s", _forward_backward))
    }
    logger.info("time %s N=%d: forward %.4f s", mechanism.label, length, point["forward_s"]["median"])
    return point


def _forward(module: nn.Module, x: torch.Tensor) -> None:
    module.eval()
    with torch.no_grad():
        module(x)


def _forward_backward(module: nn.Module, x: torch.Tensor) -> None:
    module.train()
    module.zero_grad(set_to_none=True)
    module(x).sum().backward()


def crossover(dense: Points, other: Points) -> dict[str, Any]:
    """Per pass: the shortest length from which ``other`` is faster than dense softmax at every longer
    length both ran (None if there is none), and the lengths ``other`` ran where dense could not."""
    found: dict[str, Any] = {}
    both = [n for n in other if "skipped" not in other[n] and "skipped" not in dense[n]]
    for key in ("forward_s", "forward_backward_s"):
        faster = [other[n][key]["median"] < dense[n][key]["median"] for n in both]
        found[key] = next((n for i, n in enumerate(both) if all(faster[i:])), None)
    found["only_it_ran"] = [n for n in other if "skipped" not in other[n] and "skipped" in dense[n]]
    return found


# ---------------------------------------------------------------- Performer's approximation error


def performer_error(length: int, scale: float, settings: Settings) -> dict[str, Any]:
    """Relative Frobenius error of the FAVOR+ Performer's output against exact softmax attention."""
    x = scale * torch.randn(BATCH, length, DIM, generator=torch.Generator().manual_seed(1))
    errors, uniform = {}, []
    with torch.no_grad():
        for features in settings.error_features:
            draws = []
            for draw in range(settings.error_draws):
                torch.manual_seed(draw)
                performer = create_attention("performer", DIM, heads=HEADS, nb_features=features, kernel="softmax")
                exact = create_attention("softmax", DIM, heads=HEADS)
                exact.projections.load_state_dict(performer.projections.state_dict())
                reference = exact(x)
                draws.append(_relative_error(performer(x), reference))
                uniform.append(_relative_error(_uniform_attention(exact, x), reference))
            errors[features] = asdict(Spread.of(draws))
    return {"by_features": errors, "uniform_attention": asdict(Spread.of(uniform))}


def _uniform_attention(attention: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Every token attends to every token with weight 1/N: the mean of the values."""
    _, _, v = attention.projections.split(x)  # (B, h, N, d)
    return attention.projections.merge(v.mean(dim=-2, keepdim=True).expand_as(v))


def _relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(estimate - exact) / torch.linalg.vector_norm(exact))


# ---------------------------------------------------------------- report


def summary(
    settings: Settings, timing: Mapping[str, Points], memory: Mapping[str, Points], crossovers: Mapping[str, Any],
    error: Mapping[str, Any],
) -> list[Row]:  # fmt: skip
    shown = sorted({1024, max(settings.lengths)} & set(settings.lengths))
    rows = [Row(f"{DENSE.label} at N={n}", _point(timing[DENSE.label][n], memory[DENSE.label][n])) for n in shown]
    for label, found in crossovers.items():
        ran = [n for n, point in timing[label].items() if "skipped" not in point]
        beats = [f"{name} {f'from N={found[key]}' if found[key] else 'never'}"
                 for name, key in (("fwd", "forward_s"), ("fwd+bwd", "forward_backward_s"))]  # fmt: skip
        only = f"; runs where dense does not: N={found['only_it_ran']}" if found["only_it_ran"] else ""
        rows.append(Row(f"{label}: beats softmax", f"{', '.join(beats)} (measured to N={max(ran, default=0)}){only}"))
    for case, result in error.items():
        by = ", ".join(f"m={m}: {Spread(**s).median:.3f}" for m, s in result["by_features"].items())
        uniform = Spread(**result["uniform_attention"]).median
        rows.append(Row(f"Performer rel. error, {case}", f"{by} (uniform attention: {uniform:.3f})"))
    return rows


def _point(timed: Mapping[str, Any], probed: Mapping[str, Any]) -> str:
    if "skipped" in timed:
        return timed["skipped"]
    forward, backward = Spread(**timed["forward_s"]).median, Spread(**timed["forward_backward_s"]).median
    return f"fwd {forward * 1000:.1f} ms, fwd+bwd {backward * 1000:.1f} ms, peak {probed['forward_backward_mb']:.0f} MB"


def plot_scaling(memory: Mapping[str, Points], timing: Mapping[str, Points], path: Path) -> None:
    """Log-log: forward time, forward+backward time and forward+backward peak memory against N."""
    fig, axes = figure(columns=3, width=5.5, height=4.5)
    panels = ((timing, "forward_s", "forward time (s)"), (timing, "forward_backward_s", "forward+backward time (s)"),
              (memory, "forward_backward_mb", "forward+backward peak memory (MB)"))  # fmt: skip
    for axis, (source, key, label) in zip(axes, panels):
        for index, (name, points) in enumerate(source.items()):
            kept = [(n, _value(point[key])) for n, point in points.items() if "skipped" not in point]
            style = {"color": f"C{index % 10}", "linestyle": "-" if index < 10 else "--"}
            if name == DENSE.label:
                style = {"color": "k", "linewidth": 2.5}
            if kept:
                axis.plot(*zip(*kept), marker=".", label=name, **style)
        axis.set(xscale="log", yscale="log", xlabel="sequence length N", ylabel=label)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"attention on CPU, batch {BATCH}, width {DIM}, 1 thread")
    save_figure(fig, path)


def _value(measured: float | Mapping[str, float]) -> float:
    """A memory probe's number, or a timing's median."""
    return measured["median"] if isinstance(measured, Mapping) else measured


def plot_error(error: Mapping[str, Any], path: Path) -> None:
    fig, axes = figure()
    for index, (case, result) in enumerate(error.items()):
        features = list(result["by_features"])
        spreads = [Spread(**result["by_features"][m]) for m in features]
        color = f"C{index}"
        axes.errorbar(features, [s.median for s in spreads], yerr=whiskers(spreads), marker="o", capsize=3, color=color,
                      label=f"Performer (FAVOR+), {case}")  # fmt: skip
        uniform = Spread(**result["uniform_attention"]).median
        axes.axhline(uniform, color=color, linestyle=":", label=f"uniform attention, {case}")
    axes.set(xscale="log", xlabel="random features m", ylabel="relative error vs exact softmax attention")
    axes.set_xticks(features, [str(m) for m in features], minor=False)
    axes.minorticks_off()
    axes.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    print(json.dumps(_probe_in_this_process(json.loads(sys.argv[1]))))
