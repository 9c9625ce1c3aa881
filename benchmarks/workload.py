"""The orchestration benchmark's trial: fixed CPU work in epochs, reported like the real trainable.

A module of its own because Ray workers import it: it loads what the project's trainable loads
(torch, trainables.train_loop) and nothing of the driver's side (no MLflow, no Optuna). The work
(matrix products on one thread) does not depend on the config, so every trial costs the same and
any difference in wall time between ways of running them is orchestration.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from benchmarks.sleep_workload import synthetic_loss
from trainables.train_loop import Report, tune_reporter


@dataclass(frozen=True)
class Work:
    epochs: int
    products_per_epoch: int  # (size x size) @ (size x size) matrix products per epoch
    size: int = 256


def run_trial(config: Mapping[str, Any], work: Work, report: Report) -> None:
    """``work.epochs`` epochs of fixed compute, each reported with a small checkpoint state."""
    trial_started = time.time()
    generator = torch.Generator().manual_seed(0)
    # Orthogonal, so the repeated products neither overflow nor vanish (no inf, NaN or denormals).
    weights = torch.linalg.qr(torch.randn(work.size, work.size, generator=generator)).Q
    product = weights
    for epoch in range(1, work.epochs + 1):
        start = time.perf_counter()
        for _ in range(work.products_per_epoch):
            product = weights @ product
        compute_s = time.perf_counter() - start
        metrics = {
            "epoch": epoch,
            "loss": synthetic_loss(config, epoch),
            "compute_s": compute_s,
            "trial_started": trial_started,
            "epoch_ended": time.time(),
            "pid": os.getpid(),
        }
        report(metrics, {"weights": product, "epoch": epoch})


def tune_trial(config: dict[str, Any], *, work: Work) -> None:
    """Ray Tune function trainable: reports as trainables.train_loop.tune_trainable does."""
    run_trial(config, work, tune_reporter())
