"""The one training loop, generic over families, and its Ray Tune adapter.

:func:`train` knows nothing about Ray: it takes a ``report(metrics, state)`` callable and an
optional state to resume from, so tests and the promotion step can run it directly.
:func:`tune_trainable` is the Ray Tune function trainable that wires it to ``tune.report`` and
``tune.get_checkpoint``, writing each epoch's state as a checkpoint.
"""
from __future__ import annotations

import logging
import math
import pickle
import socket
import tempfile
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from trainables.data import DataSplits
from trainables.data.tables import Arrays
from trainables.errors import UserError
from trainables.families import Family, get_family
from trainables.models import create_model

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
# (metrics, state): the state is a checkpoint (model, optimizer, ... see train), None if diverged.
Report = Callable[[dict[str, Any], "dict[str, Any] | None"], None]


@dataclass(frozen=True)
class TrainSettings:
    family: str
    epochs: int
    seed: int = 0
    max_grad_norm: float = 1.0  # gradient clipping
    plateau_patience: int = 2  # epochs without improvement before the learning rate drops
    plateau_factor: float = 0.5
    cosine_floor: float = 0.1  # the cosine schedule's last learning rate, as a fraction of the peak (nanoGPT's)
    eval_batch_size: int = 256
    latency_repeats: int = 30  # batch-1 forward passes timed once per trial
    plugins: tuple[str, ...] = ()  # modules a worker imports before it looks the family up (trainables/plugins.py)



def train(
    config: Mapping[str, Any],
    data: DataSplits,
    context: Mapping[str, Any],
    settings: TrainSettings,
    report: Report,
    resume: Mapping[str, Any] | None = None,
) -> None:
    """Train ``config`` on ``data.train``, report validation metrics and a checkpoint each epoch.

    ``resume`` is a state reported earlier (see :func:`load_checkpoint`); training continues
    after its epoch.
    """
    family = get_family(settings.family, settings.plugins)
    config = applicable(config)
    device = default_device()
    seed = int(config.get("seed", settings.seed))
    torch.manual_seed(seed)
    model = build_model(family, config, context).to(device)
    optimizer = _optimizer(model, config)
    batch_size = int(config["batch_size"])
    steps_per_epoch = math.ceil(len(next(iter(data.train.values()))) / batch_size)
    scheduler = learning_rate_schedule(optimizer, config, family, settings, steps_per_epoch)
    per_step = not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        apply_optimizer_settings(optimizer, scheduler, config, resume["config"])
        start_epoch = resume["epoch"]
    constants = {
        "param_count": sum(p.numel() for p in model.parameters()),
        **batch1_latency(model, family, data.validation, device, settings.latency_repeats),
    }

    for epoch in range(start_epoch + 1, settings.epochs + 1):
        batches = iterate_batches(data.train, family, batch_size, device, seed * 100_003 + epoch)
        if family.augment is not None and any(config.get(name) for name in family.augmentations):
            generator = torch.Generator(device).manual_seed(seed * 100_003 + epoch)
            batches = (family.augment(batch, config, generator) for batch in batches)
        learning_rate = optimizer.param_groups[0]["lr"]  # per-step schedules change it during the epoch
        progress = train_epoch(model, family, optimizer, batches, settings.max_grad_norm, scheduler.step if per_step else None)
        metrics = {"epoch": epoch, **progress, "learning_rate": learning_rate, **constants}
        if not math.isfinite(progress["train_loss"]):
            report({**metrics, family.validation_metric: family.worst_value(), "diverged": 1}, None)
            logger.warning("trial diverged at epoch %d: non-finite training loss", epoch)
            return
        validation = evaluate(model, family, data.validation, settings.eval_batch_size, device)
        if not per_step:
            scheduler.step(validation[family.metric])
        metrics.update({f"val_{name}": value for name, value in validation.items()}, diverged=0)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "family": family.name,
            "config": dict(config),
            "context": dict(context),
        }
        report(metrics, state)


def applicable(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without the parameters that do not apply to it: a population-based sweep gives
    every trial every key of the search space, None where its architecture has no use for it."""
    return {key: value for key, value in config.items() if value is not None}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model(family: Family, config: Mapping[str, Any], context: Mapping[str, Any]) -> nn.Module:
    """The model a trial config describes: every key but the training settings is a hyperparameter."""
    hyper = {k: v for k, v in config.items() if k not in family.training_settings and k not in ("architecture", "seed")}
    return create_model(family.name, config["architecture"], context, **hyper)


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, scheduler: Any, config: Mapping[str, Any], resumed: Mapping[str, Any]) -> None:
    """Restoring an optimizer restores its learning rate and weight decay; population-based
    training resumes a checkpoint under a config whose values it perturbed, which must win. The
    learning rate is rescaled, so a schedule keeps its shape at the new peak."""
    factor = float(config["learning_rate"]) / float(resumed["learning_rate"])
    for group in optimizer.param_groups:
        group["lr"] *= factor
        group["weight_decay"] = float(config["weight_decay"])
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [rate * factor for rate in scheduler.base_lrs]


def _optimizer(model: nn.Module, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, config: Mapping[str, Any], family: Family, settings: TrainSettings, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The config's ``schedule``: ``plateau`` (the default, stepped once per epoch on the validation
    metric) or ``cosine`` (stepped after every optimiser step): a linear warm-up over the first
    ``warmup_fraction`` of all steps of ``settings.epochs``, then a cosine decay to
    ``settings.cosine_floor`` times the learning rate at the last step.

    Why cosine: a trial of a few epochs needs its rate annealed within its budget, and the plateau
    schedule may never lower it: over the language model's 6 quick epochs the validation metric
    improved every epoch, so the rate stayed at its start value to the end.
    """
    schedule = config.get("schedule", "plateau")
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=family.mode, factor=settings.plateau_factor, patience=settings.plateau_patience
        )
    if schedule != "cosine":
        raise UserError(f"schedule must be 'plateau' or 'cosine', got {schedule!r}")
    total = max(1, settings.epochs * steps_per_epoch)
    warmup = int(float(config.get("warmup_fraction", 0.0)) * total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(warmup_cosine, warmup=warmup, total=total, floor=settings.cosine_floor))


def warmup_cosine(step: int, *, warmup: int, total: int, floor: float) -> float:
    """Learning-rate factor after ``step`` optimiser steps: linear from 1/warmup to 1, then cosine to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class RetrainResult:
    """One from-scratch training run of a config, judged on the test split at its best epoch."""

    seed: int
    history: list[dict[str, Any]]  # every epoch's report
    best_epoch: int | None  # by the validation metric; None if no epoch finished
    validation: dict[str, float]  # metrics at the best epoch, without prefix
    test: dict[str, float]
    test_outputs: list[np.ndarray]  # model outputs over the test split, one array per output
    diverged: bool
    nonfinite_count: int  # non-finite losses and gradients over all epochs
    state: dict[str, Any] | None  # model weights at the best epoch


def retrain_and_test(
    config: Mapping[str, Any], data: DataSplits, context: Mapping[str, Any], settings: TrainSettings, seed: int
) -> RetrainResult:
    """Train ``config`` from scratch with ``seed``, keep the best validation epoch, test it."""
    family = get_family(settings.family, settings.plugins)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}

    def keep_best(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        history.append(metrics)
        value = metrics[family.validation_metric]
        if state is not None and (not best or family.is_better(value, best["value"])):
            best.update(value=value, epoch=metrics["epoch"], state=state["model"], metrics=metrics)

    train({**config, "seed": seed}, data, context, settings, keep_best)
    diverged = bool(history and history[-1].get("diverged"))
    nonfinite = int(sum(report.get("nonfinite_count", 0) for report in history))
    if not best:
        return RetrainResult(seed, history, None, {}, {}, [], diverged, nonfinite, None)
    model = build_model(family, config, context).to(default_device())
    model.load_state_dict(best["state"])
    outputs = predict(model, family, data.test, settings.eval_batch_size, default_device())
    validation = {k.removeprefix("val_"): v for k, v in best["metrics"].items() if k.startswith("val_")}
    return RetrainResult(
        seed, history, best["epoch"], validation, family.evaluate(outputs, data.test), outputs, diverged, nonfinite, best["state"]
    )


def stability_probe(
    config: Mapping[str, Any], data: DataSplits, context: Mapping[str, Any], settings: TrainSettings,
    batch_sizes: tuple[int, ...], steps: int,
) -> dict[int, bool]:  # fmt: skip
    """A few training steps at each batch size: True where every loss and gradient stayed finite.

    Rows are drawn with replacement, so batch sizes larger than the training split work too.
    """
    family = get_family(settings.family, settings.plugins)
    rows = len(next(iter(data.train.values())))
    finite = {}
    for batch_size in batch_sizes:
        torch.manual_seed(settings.seed)
        model = build_model(family, config, context).to(default_device())
        index = np.random.default_rng(settings.seed).integers(0, rows, batch_size * steps)
        sample = {name: array[index] for name, array in data.train.items()}
        batches = iterate_batches(sample, family, batch_size, default_device())
        progress = train_epoch(model, family, _optimizer(model, config), batches, settings.max_grad_norm)
        finite[batch_size] = math.isfinite(progress["train_loss"]) and progress["nonfinite_count"] == 0
    return finite


class CheckpointError(UserError):
    """A checkpoint file is missing, damaged, or holds more than tensors and plain values."""


# What a state reported by train holds; a file without these keys was not written by it.
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "scheduler", "epoch", "family", "config", "context"})


def load_checkpoint(directory: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`train`, loaded without unpickling arbitrary objects."""
    path = directory / CHECKPOINT_FILE
    fix = "launch the sweep again, or restore its results folder from a copy you trust"
    state = load_weights_only(path, fix)
    missing = CHECKPOINT_KEYS - state.keys() if isinstance(state, dict) else CHECKPOINT_KEYS
    if missing:
        raise CheckpointError(f"{path} is not a trial checkpoint (it lacks {', '.join(sorted(missing))}); {fix}")
    return state


def load_weights_only(path: Path, fix: str, error: type[UserError] = CheckpointError) -> Any:
    """``torch.load`` of tensors and plain containers only, on the CPU.

    A file holding any other object is refused before that object is built, so a malicious
    pickle runs no code; it, a missing file and a damaged one raise ``error`` naming ``path``.
    """
    damage = _archive_damage(path)
    if damage is not None:
        raise error(f"{path} is corrupted ({damage}); {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{path} is missing; {fix}") from None
    except pickle.UnpicklingError:
        raise error(f"{path} is damaged or holds objects other than tensors and plain values: refused unread, as unpickling it could run code; {fix}") from None
    except (OSError, EOFError, RuntimeError):  # what torch.load raises on a truncated or corrupted archive
        raise error(f"{path} is truncated or corrupted; {fix}") from None


def _archive_damage(path: Path) -> str | None:
    """What is wrong inside a zip checkpoint (the first member whose CRC-32 fails), if anything.

    torch.load does not check the CRC-32s its archives carry, so damaged tensor bytes would load
    as wrong weights without a word. Files that are no zip archive are left to torch.load.
    """
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, zlib.error) as problem:
        return f"unreadable zip archive: {problem}"
    return f"{damaged} fails its CRC-32 check" if damaged else None


def iterate_batches(
    arrays: Arrays, family: Family, batch_size: int, device: torch.device, seed: int | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of tensors; shuffled when ``seed`` is given, in order otherwise.

    Shuffled batches are gathered into buffers reused from batch to batch, so a batch is valid
    until the next one is drawn; in order, a batch is a view of the arrays, copied only to another
    device. Either way models must not change their inputs in place (the arrays may be Ray's
    shared object store). A fresh copy per batch cost the memory allocator page faults worth
    several per cent of a small model's epoch (BENCHMARKS.md, trainable overhead).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arrays from Ray's object store are read-only; they are only read
        columns = {name: torch.from_numpy(np.asarray(array)) for name, array in arrays.items()}
    rows = len(next(iter(columns.values())))
    if seed is None:
        for start in range(0, rows, batch_size):
            yield {name: column[start : start + batch_size].to(device, non_blocking=True) for name, column in columns.items()}
        return
    order = torch.from_numpy(np.random.default_rng(seed).permutation(rows))
    buffers = {name: torch.empty((min(batch_size, rows), *column.shape[1:]), dtype=column.dtype) for name, column in columns.items()}
    for start in range(0, rows, batch_size):
        size = min(batch_size, rows - start)
        batch = {}
        for name, column in columns.items():
            torch.index_select(column, 0, order[start : start + size], out=buffers[name][:size])
            batch[name] = buffers[name][:size].to(device, non_blocking=True)
        yield batch


def forward(model: nn.Module, family: Family, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The model's outputs on a batch, always as a tuple in ``family.outputs`` order."""
    outputs = model(*(batch[name] for name in family.inputs))
    return outputs if isinstance(outputs, tuple) else (outputs,)


def train_epoch(
    model: nn.Module,
    family: Family,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[dict[str, torch.Tensor]],
    max_grad_norm: float,
    after_step: Callable[[], Any] | None = None,
) -> dict[str, float]:
    """One pass over the batches. Stops at the first non-finite loss; skips non-finite gradients.

    ``after_step`` runs after every optimiser step (a per-step learning-rate schedule).
    """
    model.train()
    losses, norms, nonfinite = [], [], 0
    for batch in batches:
        loss = family.loss(forward(model, family, batch), batch)
        if not torch.isfinite(loss):
            return {"train_loss": float("nan"), "grad_norm": float("nan"), "nonfinite_count": nonfinite + 1}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if not torch.isfinite(norm):
            nonfinite += 1
            continue
        optimizer.step()
        if after_step is not None:
            after_step()
        losses.append(loss.item())
        norms.append(norm.item())
    return {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "grad_norm": float(np.mean(norms)) if norms else float("nan"),
        "nonfinite_count": nonfinite,
    }


@torch.no_grad()
def predict(model: nn.Module, family: Family, arrays: Arrays, batch_size: int, device: torch.device) -> list[np.ndarray]:
    """Model outputs over every row of ``arrays``, one array per output."""
    model.eval()
    outputs = [forward(model, family, batch) for batch in iterate_batches(arrays, family, batch_size, device)]
    return [torch.cat(parts).cpu().numpy() for parts in zip(*outputs)]


def evaluate(model: nn.Module, family: Family, arrays: Arrays, batch_size: int, device: torch.device) -> dict[str, float]:
    return family.evaluate(predict(model, family, arrays, batch_size, device), arrays)


def batch1_latency(model: nn.Module, family: Family, arrays: Arrays, device: torch.device, repeats: int) -> dict[str, float]:
    """Median and 95th-percentile wall time of a batch-1 forward pass, in milliseconds."""
    return batch1_latencies({"model": model}, family, arrays, device, repeats)["model"]


@torch.no_grad()
def batch1_latencies(
    models: Mapping[str, nn.Module], family: Family, arrays: Arrays, device: torch.device, repeats: int, warmup: int = 5
) -> dict[str, dict[str, float]]:
    """Batch-1 latency (p50, p95 in ms) of several models, timed round by round in turn, so that
    whatever else the machine is doing affects each of them alike."""
    sample = next(iterate_batches(arrays, family, 1, device))
    inputs = [sample[name] for name in family.inputs]
    timings: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(warmup + repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.eval()(*inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_index >= warmup:
                timings[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {"latency_ms_p50": float(np.percentile(values, 50)), "latency_ms_p95": float(np.percentile(values, 95))}
        for name, values in timings.items()
    }


def tune_reporter() -> Report:
    """Ray Tune's report for the trial running in this worker: each epoch's metrics with the node,
    and the state, if any, as a checkpoint. Sets the worker up as a trial needs it: as many torch
    threads as Ray gave the trial CPUs."""
    import ray
    from ray import tune

    # Ray logs a line for every checkpoint of every trial (a hundred in a quick sweep); the
    # sweep's progress table already shows each epoch. Warnings and errors still show.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    runtime = ray.get_runtime_context()
    torch.set_num_threads(max(1, int(runtime.get_assigned_resources().get("CPU", 1.0))))
    # Hostname and IP are not enough: several Ray nodes may share one machine.
    node = f"{socket.gethostname()}/{runtime.get_node_id()[:12]}"

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        metrics = {**metrics, "node": node}
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state, Path(directory) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    return report


def tune_trainable(config: dict[str, Any], *, data: DataSplits, context: dict[str, Any], settings: TrainSettings) -> None:
    """Ray Tune function trainable: ``data`` arrives from the object store via ``tune.with_parameters``."""
    from ray import tune

    report = tune_reporter()
    resume = None
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as directory:
            resume = load_checkpoint(Path(directory))
    train(config, data, context, settings, report, resume)
