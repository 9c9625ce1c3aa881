"""Inference latency on CPU: batch-1 p50 / p95 of every architecture of every family, with one
torch thread and with all cores, and throughput (samples/s) at batch 64.

Models are built with their factories' default hyperparameters (random weights: time does not
depend on their values) and fed the validation rows of each family's smoke-preset data. Batch-1
latency is ``trainables.train_loop.batch1_latencies``, the measurement trials report, which times
a family's models round by round in turn. Where the default preset's inputs are larger
(localization's 1,024-sample captures, the language model's 256-character windows) the family is
measured again at that size: HeimdallNetPro's 70 ms budget (the seed's) is about real captures,
and is judged there, at one thread, as a trial on one CPU measures it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from benchmarks.common import Outcome, Row, Spread, figure, save_figure, time_interleaved, torch_threads
from trainables.families import Family, family_names, get_family
from trainables.train_loop import batch1_latencies, build_model, forward, iterate_batches

LATENCY_BUDGET_MS, BUDGET_MODEL = 70.0, ("localization", "heimdall_net_pro")
# Default-preset inputs where they are larger than the smoke preset's, with few rows.
LARGER_INPUTS = {"localization": {"n_samples": 64}, "language_model": {"max_sequences": 240}}
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Settings:
    latency_repeats: int
    throughput_repeats: int
    families: tuple[str, ...]
    throughput_batch: int = 64


SIZES = {
    "tiny": Settings(latency_repeats=3, throughput_repeats=1, families=("response_time",), throughput_batch=4),
    "quick": Settings(latency_repeats=30, throughput_repeats=3, families=family_names()),
    "default": Settings(latency_repeats=100, throughput_repeats=7, families=family_names()),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    threads = sorted({1, os.cpu_count() or 1})
    measured = []
    for name in settings.families:
        family = get_family(name)
        for shapes, data_settings in cases(family):
            case = measure_case(family, data_settings, threads, settings)
            measured.append({"family": name, "shapes": shapes, **case})
    plot(measured, out / "latency.png")
    rows = summary(measured, threads, settings.throughput_batch)
    return Outcome({**asdict(settings), "threads": threads}, {"cases": measured}, rows)


def cases(family: Family) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, data settings): the smoke preset's, and the default preset's if its inputs are larger."""
    found = [("smoke shapes", family.presets["smoke"].data)]
    if family.name in LARGER_INPUTS:
        found.append(("default shapes", {**family.presets["default"].data, **LARGER_INPUTS[family.name]}))
    return found


def measure_case(
    family: Family, data_settings: Mapping[str, Any], threads: list[int], settings: Settings
) -> dict[str, Any]:
    """The input shapes, and per architecture and thread count batch-1 p50 / p95 (ms) and samples/s."""
    data = family.load_data(data_settings, None, 0)
    context = family.context(data.train)
    torch.manual_seed(0)
    models = {name: build_model(family, {"architecture": name}, context).eval() for name in family.architectures()}
    batch = _batch(data.validation, family, settings.throughput_batch)
    found: dict[str, Any] = {name: {} for name in models}
    for count in threads:
        with torch_threads(count), torch.no_grad():
            latency = batch1_latencies(models, family, data.validation, CPU, settings.latency_repeats)
            throughput = time_interleaved({name: _forward_on(model, family, batch) for name, model in models.items()},
                                          settings.throughput_repeats)  # fmt: skip
        for name in models:
            found[name][f"threads_{count}"] = {
                **latency[name],
                "samples_per_s": asdict(Spread.of([settings.throughput_batch / t for t in throughput[name]])),
            }
    return {"input_shapes": {name: list(batch[name].shape[1:]) for name in family.inputs}, "models": found}


def _batch(arrays: Mapping[str, np.ndarray], family: Family, size: int) -> dict[str, torch.Tensor]:
    """``size`` rows drawn with replacement (the smoke splits are smaller than a batch of 64)."""
    rows = np.random.default_rng(0).integers(0, len(next(iter(arrays.values()))), size)
    return next(iterate_batches({name: array[rows] for name, array in arrays.items()}, family, size, CPU))


def _forward_on(model: nn.Module, family: Family, batch: Mapping[str, torch.Tensor]) -> Any:
    return lambda: forward(model, family, batch)


def summary(cases: list[dict[str, Any]], threads: list[int], batch: int) -> list[Row]:
    rows = []
    for case in cases:
        for name, by_threads in case["models"].items():
            parts = [_latency_and_rate(n, by_threads[f"threads_{n}"]) for n in threads]
            quantity = f"{case['family']} {name} ({case['shapes']}): p50/p95, batch-{batch} rate"
            rows.append(Row(quantity, "; ".join(parts)))
    for case in cases:
        if (case["family"], case["shapes"]) == (BUDGET_MODEL[0], "default shapes"):
            p95 = case["models"][BUDGET_MODEL[1]]["threads_1"]["latency_ms_p95"]
            quantity, budget = "HeimdallNetPro p95, 1 thread, 1,024-sample captures", f"<= {LATENCY_BUDGET_MS:.0f} ms"
            rows.append(Row(quantity, f"{p95:.1f} ms", budget, p95 <= LATENCY_BUDGET_MS))
    return rows


def _latency_and_rate(threads: int, measured: Mapping[str, Any]) -> str:
    rate = Spread(**measured["samples_per_s"]).median
    return f"{threads} thr: {measured['latency_ms_p50']:.1f}/{measured['latency_ms_p95']:.1f} ms, {rate:.0f}/s"


def plot(cases: list[dict[str, Any]], path: Path) -> None:
    """p50 bars with p95 ticks per model and thread count, and the 70 ms budget."""
    labels = [f"{case['family']} {name} [{case['shapes']}]" for case in cases for name in case["models"]]
    thread_keys = list(next(iter(cases[0]["models"].values())))
    fig, axes = figure(width=9, height=0.35 * len(labels) + 1.5)
    height = 0.8 / len(thread_keys)
    for index, key in enumerate(thread_keys):
        measured = [by_threads[key] for case in cases for by_threads in case["models"].values()]
        positions = np.arange(len(labels)) + index * height
        label = f"p50, {key.removeprefix('threads_')} thread(s)"
        axes.barh(positions, [m["latency_ms_p50"] for m in measured], height=height, color=f"C{index}", label=label)
        axes.scatter([m["latency_ms_p95"] for m in measured], positions, marker="|", color="k", s=60, zorder=3)
    axes.axvline(LATENCY_BUDGET_MS, color="r", linestyle="--", label="HeimdallNetPro budget (70 ms)")
    axes.set_yticks(np.arange(len(labels)) + 0.4 - height / 2, labels, fontsize=7)
    axes.set(xscale="log", xlabel="batch-1 latency (ms); ticks: p95")
    axes.invert_yaxis()
    axes.legend(fontsize=7)
    save_figure(fig, path)
