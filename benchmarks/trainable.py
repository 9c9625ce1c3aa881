"""Trainable overhead: training samples per second of the generic trainable against a bare loop.

Both train response_time_cnn on the same simulated EEG data with the same batch size, AdamW
settings and thread count (one, as a trial on one CPU), and both evaluate the validation split
after every epoch (a tuning loop needs that metric). The generic side is
``trainables.train_loop.train`` with a report callable that does what the Ray adapter does per
epoch, ``torch.save`` of the state. What it adds: batch dictionaries, gradient clipping,
non-finite checks, the plateau scheduler, a batch-1 latency probe per trial and the checkpoints.
The two run in alternation, so a busy moment of the machine slows both alike.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from benchmarks.common import (
    Outcome, Row, Spread, figure, save_figure, seconds, time_calls, time_interleaved, torch_threads,
)  # fmt: skip
from trainables.data import DataSplits
from trainables.families import get_family
from trainables.train_loop import CHECKPOINT_FILE, TrainSettings, batch1_latency, build_model, train

FAMILY = "response_time"
CONFIG = {
    "architecture": "response_time_cnn", "dropout": 0.3, "learning_rate": 1e-3, "weight_decay": 1e-4, "batch_size": 32,
}  # fmt: skip
TARGET_OVERHEAD = 0.03  # issue 19: within 3% of the bare loop


@dataclass(frozen=True)
class Settings:
    preset: str  # the response_time preset whose simulated data both loops train on
    epochs: int
    repeats: int


# The quick preset's data and epochs: per-trial costs amortise over epochs as in a quick sweep.
# Rounds differ by +-3% on a quiet 2-core machine: 15 of them put the median within about 1%.
SIZES = {
    "tiny": Settings(preset="smoke", epochs=1, repeats=1),
    "quick": Settings(preset="quick", epochs=8, repeats=5),
    "default": Settings(preset="quick", epochs=8, repeats=15),
}


def measure(size: str, out: Path) -> Outcome:
    settings = SIZES[size]
    family = get_family(FAMILY)
    data = family.load_data(family.presets[settings.preset].data, None, 0).without_test()
    context = family.context(data.train)
    samples = settings.epochs * len(data.train["eeg"])
    saves: list[float] = []
    loops = {
        "bare": lambda: bare_loop(data, context, settings.epochs),
        "generic": lambda: generic(data, context, settings.epochs, saves),
    }
    with torch_threads(1):
        timings = time_interleaved(loops, settings.repeats)
        probe = time_calls(lambda: latency_probe(data, context), max(1, settings.repeats // 2))
    slowdown = [1 - bare / generic for bare, generic in zip(timings["bare"], timings["generic"])]  # per round
    results = {
        "samples_per_epoch": len(data.train["eeg"]),
        "samples_per_s": {name: asdict(Spread.of([samples / t for t in values])) for name, values in timings.items()},
        "overhead": asdict(Spread.of(slowdown)),
        "latency_probe_s": asdict(Spread.of(probe)),
        "checkpoint_save_s": asdict(Spread.of(saves)),
    }
    plot(timings, samples, out / "trainable.png")
    return Outcome({**asdict(settings), "config": CONFIG, "threads": 1}, results, summary(results))


def generic(data: DataSplits, context: dict[str, Any], epochs: int, saves: list[float]) -> None:
    """The project's training loop; each epoch's state saved as the Ray adapter saves it."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / CHECKPOINT_FILE

        def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
            saves.append(seconds(lambda: torch.save(state, path)))

        train(CONFIG, data, context, TrainSettings(family=FAMILY, epochs=epochs), report)


def bare_loop(data: DataSplits, context: dict[str, Any], epochs: int) -> float:
    """What one writes by hand: shuffled batches, MSE, AdamW, and the validation NRMSE per epoch."""
    torch.manual_seed(0)
    model = build_model(get_family(FAMILY), CONFIG, context)
    optimizer = torch.optim.AdamW(model.parameters(), lr=CONFIG["learning_rate"], weight_decay=CONFIG["weight_decay"])
    eeg, target = (torch.from_numpy(data.train[name]) for name in ("eeg", "response_time"))
    validation_eeg, validation_target = (torch.from_numpy(data.validation[name]) for name in ("eeg", "response_time"))
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(eeg), generator=generator).split(CONFIG["batch_size"]):
            loss = F.mse_loss(model(eeg[index]), target[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            prediction = torch.cat([model(chunk) for chunk in validation_eeg.split(TrainSettings.eval_batch_size)])
        nrmse = float((prediction - validation_target).pow(2).mean().sqrt() / validation_target.std())
    return nrmse


def latency_probe(data: DataSplits, context: dict[str, Any]) -> None:
    """The batch-1 latency measurement ``train`` makes once per trial, alone."""
    model = build_model(get_family(FAMILY), CONFIG, context)
    batch1_latency(model, get_family(FAMILY), data.validation, torch.device("cpu"), TrainSettings.latency_repeats)


def summary(results: dict[str, Any]) -> list[Row]:
    rates = {name: Spread(**value) for name, value in results["samples_per_s"].items()}
    overhead = Spread(**results["overhead"])
    return [
        Row("generic trainable (train + torch.save)", rates["generic"].show("samples/s", digits=0)),
        Row("bare PyTorch loop", rates["bare"].show("samples/s", digits=0)),
        Row("generic slower than bare by", overhead.show("%", 100, 1), "<= 3%", overhead.median <= TARGET_OVERHEAD),
        Row("  of it: batch-1 latency probe per trial", Spread(**results["latency_probe_s"]).show("s")),
        Row("  of it: torch.save per epoch", Spread(**results["checkpoint_save_s"]).show("ms", 1000, 1)),
    ]


def plot(timings: dict[str, list[float]], samples: int, path: Path) -> None:
    fig, axes = figure()
    for position, values in enumerate(timings.values()):
        rates = [samples / t for t in values]
        axes.bar(position, Spread.of(rates).median, color=f"C{position}", alpha=0.6)
        axes.scatter([position] * len(rates), rates, color="k", s=12, zorder=3)
    axes.set_xticks(range(len(timings)), [f"{name} loop" for name in timings])
    axes.set_ylabel("training samples / s (median, dots: repeats)")
    axes.set_title("response_time_cnn, 1 thread")
    save_figure(fig, path)
