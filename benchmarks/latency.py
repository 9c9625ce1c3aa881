"""Inference latency on CPU: batch-1 p50 / p95 of every architecture of every family, with one
torch thread and with all cores, and throughput (samples/s) at batch 64; and batch-1 latency of
every exported format (eager PyTorch, the torch.export program model.pt2, model.onnx in ONNX
Runtime), on one thread, for each family's first baseline and HeimdallNetPro.

Models are built with their factories' default hyperparameters (random weights: time does not
depend on their values) and fed the validation rows of each family's smoke-preset data. Batch-1
latency is ``trainables.train_loop.batch1_latencies``, the measurement trials report, which times
a family's models round by round in turn. Where the default preset's inputs are larger
(localization's 1,024-sample captures, the language model's 256-character windows) the family is
measured again at that size: HeimdallNetPro's 70 ms budget (the seed's) is about real captures,
and is judged there, at one thread, as a trial on one CPU measures it.

The formats are timed on what ``sweeper export`` writes (sweeper/model_folder.py), at the default
preset's shapes, in rounds: each round times every format ``format_calls`` times in turn and gives
a p50 and a p95 per format; the spread is over rounds, and each round records the 1-minute load
average before and after it. HeimdallNetPro's target is the seed's 5.56 ms (an RTX 3080).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from benchmarks.common import Outcome, Row, Spread, figure, save_figure, time_interleaved, torch_threads, whiskers
from sweeper.model_folder import ONNX, PROGRAM, ExportedModel, load, write_folder
from trainables.families import Family, family_names, get_family
from trainables.train_loop import batch1_latencies, build_model, forward, iterate_batches

LATENCY_BUDGET_MS, BUDGET_MODEL = 70.0, ("localization", "heimdall_net_pro")
# Default-preset inputs where they are larger than the smoke preset's, with few rows.
LARGER_INPUTS = {"localization": {"n_samples": 64}, "language_model": {"max_sequences": 240}}
CPU = torch.device("cpu")
SEED_GPU_MS = 5.56  # BUDGET_MODEL's batch-1 time in the seed, on an RTX 3080: its exported formats' target on one core


@dataclass(frozen=True)
class Settings:
    latency_repeats: int
    throughput_repeats: int
    families: tuple[str, ...]
    throughput_batch: int = 64
    format_rounds: int = 5  # rounds of the exported formats' timing: the spread of p50 and p95 is over these
    format_calls: int = 100  # batch-1 calls per format and round


SIZES = {
    "tiny": Settings(latency_repeats=3, throughput_repeats=1, families=("response_time",), throughput_batch=4, format_rounds=2, format_calls=5),
    "quick": Settings(latency_repeats=30, throughput_repeats=3, families=family_names(), format_rounds=3, format_calls=50),
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
    formats = [timed for name in settings.families for timed in measure_formats(get_family(name), settings)]
    plot(measured, out / "latency.png")
    plot_formats(formats, out / "latency_formats.png")
    rows = summary(measured, threads, settings.throughput_batch) + format_summary(formats)
    return Outcome({**asdict(settings), "threads": threads}, {"cases": measured, "formats": formats}, rows)


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


def format_models(family: Family) -> list[str]:
    """The architectures whose exported formats are timed: the family's first baseline, and HeimdallNetPro."""
    first = next(iter(family.promotion().baselines.values()))["architecture"]
    return [first, *([BUDGET_MODEL[1]] if family.name == BUDGET_MODEL[0] and first != BUDGET_MODEL[1] else [])]


def measure_formats(family: Family, settings: Settings) -> list[dict[str, Any]]:
    """Per format model: batch-1 p50 / p95 (ms) of each exported format on one thread, per round,
    with the load average around each round, at the default preset's shapes."""
    shapes, data_settings = cases(family)[-1]
    data = family.load_data(data_settings, None, 0)
    context = family.context(data.train)
    sample = next(iterate_batches(data.validation, family, 1, CPU))  # the row batch1_latencies times
    found = []
    for architecture in format_models(family):
        torch.manual_seed(0)
        config = {"architecture": architecture}
        weights = build_model(family, config, context).state_dict()
        with tempfile.TemporaryDirectory() as directory:
            runners = format_runners(write_folder(ExportedModel(family.name, config, context, weights), Path(directory) / "model"), family, sample)
            rounds = [_format_round(runners, settings.format_calls) for _ in range(settings.format_rounds)]
        found.append({"family": family.name, "architecture": architecture, "shapes": shapes,
                      "input_shapes": {name: list(sample[name].shape) for name in family.inputs},
                      "active_receivers": int(sample["mask"].sum()) if "mask" in sample else None, "rounds": rounds})  # fmt: skip
    return found


def format_runners(folder: Path, family: Family, sample: Mapping[str, torch.Tensor]) -> dict[str, Callable[[], Any]]:
    """One batch-1 call per format the folder holds: eager PyTorch, model.pt2, model.onnx."""
    inputs = [sample[name] for name in family.inputs]
    model = load(folder)
    runners = {"eager": lambda: model(*inputs)}
    if (folder / PROGRAM).is_file():
        program = torch.export.load(folder / PROGRAM).module()
        runners["pt2"] = lambda: program(*inputs)
    if (folder / ONNX).is_file():
        session, feeds = onnx_session(folder / ONNX), {name: tensor.numpy() for name, tensor in zip(family.inputs, inputs)}
        runners["onnx"] = lambda: session.run(None, feeds)
    return runners


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime session on one thread, with its default (all) graph optimisations."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _format_round(runners: Mapping[str, Callable[[], Any]], calls: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with torch_threads(1), torch.no_grad():
        seconds = time_interleaved(runners, calls, warmup=5)
    latency = {name: {"p50_ms": 1000 * float(np.percentile(values, 50)), "p95_ms": 1000 * float(np.percentile(values, 95))}
               for name, values in seconds.items()}  # fmt: skip
    return {"load_1min": [load_before, os.getloadavg()[0]], "latency": latency}


def format_spreads(timed: Mapping[str, Any]) -> dict[str, dict[str, Spread]]:
    """Per format, the spread over rounds of the p50 and of the p95."""
    rounds = timed["rounds"]
    return {name: {quantile: Spread.of([r["latency"][name][quantile] for r in rounds]) for quantile in ("p50_ms", "p95_ms")}
            for name in rounds[0]["latency"]}  # fmt: skip


def format_summary(formats: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for timed in formats:
        spreads = format_spreads(timed)
        loads = [value for r in timed["rounds"] for value in r["load_1min"]]
        parts = [f"{name} {s['p50_ms'].show(digits=1)} / {s['p95_ms'].show(digits=1)}" for name, s in spreads.items()]
        quantity = f"{timed['family']} {timed['architecture']} ({timed['shapes']}): batch-1 p50 / p95 ms, 1 thread"
        rows.append(Row(quantity, f"{'; '.join(parts)} (load {min(loads):.1f}-{max(loads):.1f})"))
        if (timed["family"], timed["architecture"]) == BUDGET_MODEL and "onnx" in spreads:
            p50 = spreads["onnx"]["p50_ms"].median
            rows.append(Row("HeimdallNetPro p50, ONNX Runtime, 1 thread", f"{p50:.2f} ms", f"<= {SEED_GPU_MS} ms (seed, GPU)", p50 <= SEED_GPU_MS))
    return rows


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


def plot_formats(formats: list[dict[str, Any]], path: Path) -> None:
    """p50 bars (median over rounds, whiskers min-max) per model and format, and the 5.56 ms target."""
    fig, axes = figure(width=8, height=0.5 * len(formats) + 2)
    names = ("eager", "pt2", "onnx")
    height = 0.8 / len(names)
    for index, name in enumerate(names):
        spreads = [format_spreads(timed).get(name, {}).get("p50_ms") for timed in formats]
        positions = [row + index * height for row, spread in enumerate(spreads) if spread is not None]
        shown = [spread for spread in spreads if spread is not None]
        axes.barh(positions, [s.median for s in shown], height=height, xerr=whiskers(shown), color=f"C{index}", label=name)
    axes.axvline(SEED_GPU_MS, color="r", linestyle="--", label=f"HeimdallNetPro target ({SEED_GPU_MS} ms, the seed's GPU)")
    axes.set_yticks(np.arange(len(formats)) + 0.4 - height / 2, [f"{t['family']} {t['architecture']}" for t in formats], fontsize=7)
    axes.set(xlabel="batch-1 p50 latency, 1 thread (ms)")
    axes.invert_yaxis()
    axes.legend(fontsize=7)
    save_figure(fig, path)
